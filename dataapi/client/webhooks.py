"""Standard Webhooks verification (https://www.standardwebhooks.com), as the server signs its callbacks:
HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}`` with the company's ``whsec_`` secret,
``v1,<base64>`` signatures separated by spaces (two of them for a while after a secret rotation)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh callback: refuse it (answer 400 or 401, do not act on it)."""


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, str] = {}
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out.setdefault(name.lower(), value)
    return out


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("The webhook secret is not base64 (expected whsec_...)") from None


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of a message (what the server sends in ``webhook-signature``)."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_webhook(headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | str,
                   secret: str | bytes, *, tolerance: float = TOLERANCE_SECONDS, now: float | None = None) -> Any:
    """The callback's decoded JSON body when ``headers`` carry a valid signature of exactly ``body`` (the raw
    bytes received, before any parsing) by ``secret``, made less than ``tolerance`` seconds from now (either
    way); otherwise WebhookVerificationError. Keep ``webhook-id`` to drop repeated deliveries: a retry of one
    callback carries the same id."""
    h = _headers(headers)
    msg_id, stamp, signatures = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("Missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("Invalid webhook-timestamp") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("Message timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("Message timestamp too new")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = sign(secret, msg_id, timestamp, raw).encode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        # Every candidate is compared in constant time; only v1 (HMAC-SHA256) is known.
        if version == "v1" and hmac.compare_digest(f"v1,{value}".encode(), expected):
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                raise WebhookVerificationError("The signed body is not JSON") from None
    raise WebhookVerificationError("No matching signature found")
