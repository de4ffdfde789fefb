"""Signs webhook requests with the providers' own PyPI libraries, so that
tests/api/provider_libs.rs can check hookrelay's sources against them rather than against its
own reading of the docs: `slack_sdk` (SignatureVerifier.generate_signature) and
`standardwebhooks` (Webhook.sign).

    python sign_providers.py '[{"preset": "slack", "secret": "…", "body": "…"}, …]'

Each request is {preset, secret, body, id?, timestamp?} (timestamp in Unix seconds: now when
absent). Prints one JSON line per request, in order: {"preset", "headers", "body"}, the headers
being the ones the provider sends that the signature depends on.
"""

import json
import sys
import time
import uuid
from datetime import datetime, timezone

from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook


def headers_for(req):
    timestamp = req.get("timestamp")
    if timestamp is None:
        timestamp = int(time.time())
    preset = req["preset"]
    if preset == "slack":
        signature = SignatureVerifier(req["secret"]).generate_signature(
            timestamp=str(timestamp), body=req["body"]
        )
        return {
            "x-slack-request-timestamp": str(timestamp),
            "x-slack-signature": signature,
        }
    if preset == "standard_webhooks":
        msg_id = req.get("id") or f"msg_{uuid.uuid4().hex}"
        at = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": Webhook(req["secret"]).sign(msg_id, at, req["body"]),
        }
    raise SystemExit(f"no PyPI library signs preset {preset!r}")


def main():
    requests = json.loads(sys.argv[1] if len(sys.argv) > 1 else "[]")
    for req in requests:
        line = {"preset": req["preset"], "headers": headers_for(req), "body": req["body"]}
        print(json.dumps(line, ensure_ascii=False))


if __name__ == "__main__":
    main()
