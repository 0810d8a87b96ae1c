"""Standard Webhooks signing, checked with the reference verifier (the `standardwebhooks` package)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from dataapi.callbacks.webhooks import new_secret, sign, signature_header, webhook_headers

BODY = b'{"job_id":"j-1","status":"succeeded"}'


def test_new_secret_is_whsec_and_32_random_bytes():
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_sign_matches_the_reference_implementation():
    secret = new_secret()
    reference = Webhook(secret).sign("msg_1", datetime.fromtimestamp(1_700_000_000, UTC), BODY.decode())
    assert sign(secret, "msg_1", 1_700_000_000, BODY) == reference


def test_headers_verify_with_standardwebhooks():
    secret = new_secret()
    headers = webhook_headers("msg_2", int(time.time()), BODY, [secret])
    assert Webhook(secret).verify(BODY, headers) == {"job_id": "j-1", "status": "succeeded"}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "DataAPI-Webhooks/1"
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent"}


def test_tampered_body_or_other_secret_fails():
    secret = new_secret()
    headers = webhook_headers("msg_3", int(time.time()), BODY, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_rotation_signs_with_both_secrets():
    old, new = new_secret(), new_secret()
    headers = webhook_headers("msg_4", int(time.time()), BODY, [old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)


def test_no_secret_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], "msg_5", 0, BODY)
