// A hookrelay receiver in Node.js (Express): verifies X-Signature and the Standard Webhooks
// headers on the raw body, then parses it.
// WEBHOOK_SECRET is the webhook's secret as hex, WEBHOOK_SECRET_WHSEC the same key as whsec_….
const crypto = require("crypto");
const express = require("express");

const SECRET = Buffer.from(process.env.WEBHOOK_SECRET, "hex");
const WHSEC = Buffer.from(process.env.WEBHOOK_SECRET_WHSEC.replace(/^whsec_/, ""), "base64");
const TOLERANCE_SECONDS = 5 * 60;

function safeEqual(a, b) {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// X-Signature: "<secret id>=<hex HMAC-SHA256(secret, body)>", several comma-separated while a
// secret is being rotated. Returns the id of the entry that matches, or null.
function verifyXSignature(header, body) {
  const want = crypto.createHmac("sha256", SECRET).update(body).digest();
  for (const entry of (header || "").split(",")) {
    const [id, sig] = entry.trim().split("=");
    if (sig && safeEqual(Buffer.from(sig, "hex"), want)) return id;
  }
  return null;
}

// webhook-signature: "v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>",
// several space-separated while a secret is being rotated.
function verifyStandardWebhooks(headers, body) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !/^\d+$/.test(timestamp || "") || !signatures) return "missing webhook-* headers";
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) {
    return "webhook-timestamp is too far from now";
  }
  const want = crypto.createHmac("sha256", WHSEC).update(`${id}.${timestamp}.`).update(body).digest();
  for (const entry of signatures.split(" ")) {
    const [version, sig] = entry.split(",");
    if (version === "v1" && sig && safeEqual(Buffer.from(sig, "base64"), want)) return null;
  }
  return "no webhook-signature matches";
}

const app = express();
// The raw bytes, exactly as sent: parsing and re-serializing first could change them.
app.post("/webhooks/hookrelay", express.raw({ type: "application/json" }), (req, res) => {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const secretId = verifyXSignature(req.get("x-signature"), body);
  if (secretId === null) return res.status(401).json({ error: "no x-signature entry matches" });
  const problem = verifyStandardWebhooks(req.headers, body);
  if (problem) return res.status(401).json({ error: problem });

  const event = JSON.parse(body.toString("utf8"));
  // Deliveries are at least once: deduplicate on webhook-id (= event.id) before acting on it.
  console.log(`verified ${event.id} ${event.action}`);
  res.status(200).json({
    verified: ["x-signature", "webhook-signature"],
    secret_id: secretId,
    webhook_id: req.get("webhook-id"),
    action: event.action,
    target: event.data.target ? event.data.target.name : null,
  });
});

const server = app.listen(Number(process.env.PORT || 3000), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
