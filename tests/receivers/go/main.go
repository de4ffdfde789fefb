// A hookrelay receiver in Go, standard library only: verifies X-Signature and the Standard
// Webhooks headers on the raw body, then parses it.
// WEBHOOK_SECRET is the webhook's secret as hex, WEBHOOK_SECRET_WHSEC the same key as whsec_….
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const tolerance = 5 * time.Minute

// verify checks both signatures of a delivery and returns the id of the X-Signature secret
// that matched.
func verify(secret, whsec []byte, h http.Header, body []byte) (string, error) {
	// X-Signature: "<secret id>=<hex HMAC-SHA256(secret, body)>", several comma-separated while
	// a secret is being rotated.
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	secretID := ""
	for _, entry := range strings.Split(h.Get("X-Signature"), ",") {
		id, sig, _ := strings.Cut(strings.TrimSpace(entry), "=")
		if got, err := hex.DecodeString(sig); err == nil && hmac.Equal(got, want) {
			secretID = id
			break
		}
	}
	if secretID == "" {
		return "", errors.New("no x-signature entry matches")
	}

	// webhook-signature: "v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>",
	// several space-separated while a secret is being rotated.
	msgID, timestamp := h.Get("webhook-id"), h.Get("webhook-timestamp")
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if msgID == "" || err != nil || h.Get("webhook-signature") == "" {
		return "", errors.New("missing webhook-* headers")
	}
	if age := time.Since(time.Unix(ts, 0)); age > tolerance || age < -tolerance {
		return "", errors.New("webhook-timestamp is too far from now")
	}
	mac = hmac.New(sha256.New, whsec)
	mac.Write([]byte(msgID + "." + timestamp + "."))
	mac.Write(body)
	want = mac.Sum(nil)
	for _, entry := range strings.Split(h.Get("webhook-signature"), " ") {
		version, sig, _ := strings.Cut(entry, ",")
		if got, err := base64.StdEncoding.DecodeString(sig); version == "v1" && err == nil && hmac.Equal(got, want) {
			return secretID, nil
		}
	}
	return "", errors.New("no webhook-signature matches")
}

func answer(w http.ResponseWriter, status int, value any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(value)
}

func main() {
	secret, err := hex.DecodeString(os.Getenv("WEBHOOK_SECRET"))
	if err != nil {
		log.Fatal("WEBHOOK_SECRET must be the webhook's 64 hex chars")
	}
	whsec, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(os.Getenv("WEBHOOK_SECRET_WHSEC"), "whsec_"))
	if err != nil {
		log.Fatal("WEBHOOK_SECRET_WHSEC must be the webhook's whsec_… key")
	}

	http.HandleFunc("/webhooks/hookrelay", func(w http.ResponseWriter, r *http.Request) {
		// The raw bytes, exactly as sent: parsing and re-serializing first could change them.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil || r.Method != http.MethodPost {
			answer(w, http.StatusBadRequest, map[string]string{"error": "expected a POST with a body"})
			return
		}
		secretID, err := verify(secret, whsec, r.Header, body)
		if err != nil {
			answer(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		var event struct {
			ID     string `json:"id"`
			Action string `json:"action"`
			Data   struct {
				Target *struct {
					Name string `json:"name"`
				} `json:"target"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			answer(w, http.StatusBadRequest, map[string]string{"error": "body is not JSON"})
			return
		}
		// Deliveries are at least once: deduplicate on webhook-id (= event.ID) before acting.
		fmt.Printf("verified %s %s\n", event.ID, event.Action)
		var target *string
		if event.Data.Target != nil {
			target = &event.Data.Target.Name
		}
		answer(w, http.StatusOK, map[string]any{
			"verified":   []string{"x-signature", "webhook-signature"},
			"secret_id":  secretID,
			"webhook_id": r.Header.Get("webhook-id"),
			"action":     event.Action,
			"target":     target,
		})
	})

	port := os.Getenv("PORT")
	if port == "" {
		port = "3000"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
