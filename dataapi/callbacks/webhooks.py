"""Standard Webhooks signing (https://www.standardwebhooks.com): what a receiver needs to check that a callback
came from us, unaltered and recently. Secrets are ``whsec_`` + base64 of the HMAC key; during a secret rotation
two secrets sign each message, so receivers holding either one accept it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
USER_AGENT = "DataAPI-Webhooks/1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    if not secrets:
        raise ValueError("at least one webhook secret is required")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(msg_id: str, timestamp: int, body: bytes, secrets: list[str]) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
