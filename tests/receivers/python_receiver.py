"""A hookrelay receiver in Python, standard library only: verifies X-Signature and the Standard
Webhooks headers on the raw body, then parses it. `verify` takes any case-insensitive header
mapping and the body bytes, so it works as is in Flask and FastAPI too.

WEBHOOK_SECRET is the webhook's secret as hex, WEBHOOK_SECRET_WHSEC the same key as whsec_….
"""

import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = bytes.fromhex(os.environ["WEBHOOK_SECRET"])
WHSEC = base64.b64decode(os.environ["WEBHOOK_SECRET_WHSEC"].removeprefix("whsec_"))
TOLERANCE_SECONDS = 5 * 60


class InvalidSignature(Exception):
    pass


def verify(headers, body: bytes) -> str:
    """Checks both signatures of a delivery; returns the id of the X-Signature secret that
    matched, or raises InvalidSignature."""
    # X-Signature: "<secret id>=<hex HMAC-SHA256(secret, body)>", several comma-separated while
    # a secret is being rotated.
    want = hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
    secret_id = None
    for entry in (headers.get("X-Signature") or "").split(","):
        sid, _, sig = entry.strip().partition("=")
        if hmac.compare_digest(sig.lower().encode(), want):
            secret_id = sid
            break
    if secret_id is None:
        raise InvalidSignature("no x-signature entry matches")

    # webhook-signature: "v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>",
    # several space-separated while a secret is being rotated.
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp") or ""
    signatures = headers.get("webhook-signature")
    if not msg_id or not (timestamp.isascii() and timestamp.isdigit()) or not signatures:
        raise InvalidSignature("missing webhook-* headers")
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise InvalidSignature("webhook-timestamp is too far from now")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(WHSEC, signed, hashlib.sha256).digest())
    for entry in signatures.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return secret_id
    raise InvalidSignature("no webhook-signature matches")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        # The raw bytes, exactly as sent: parsing and re-serializing first could change them.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            secret_id = verify(self.headers, body)
        except InvalidSignature as e:
            return self.answer(401, {"error": str(e)})
        event = json.loads(body)
        # Deliveries are at least once: deduplicate on webhook-id (= event["id"]) before acting.
        print(f"verified {event['id']} {event['action']}", flush=True)
        self.answer(200, {
            "verified": ["x-signature", "webhook-signature"],
            "secret_id": secret_id,
            "webhook_id": self.headers["webhook-id"],
            "action": event["action"],
            "target": (event["data"].get("target") or {}).get("name"),
        })

    def answer(self, status, value):
        out = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "3000"))), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
