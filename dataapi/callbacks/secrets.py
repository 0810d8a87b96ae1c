"""Webhook signing secrets: encrypted at rest, rotated with a grace period during which the previous secret
also signs. ``rotate`` and ``describe`` are what the Admin API and the CLI both call."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

from cryptography.fernet import Fernet
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from dataapi.callbacks.webhooks import new_secret
from dataapi.models import WebhookSecret, as_utc, utcnow


class SecretBox:
    """Encrypts webhook secrets with a key derived from the deployment's secret key: they must be readable
    to sign, so they cannot be hashed, but a copy of the database alone does not reveal them."""

    def __init__(self, secret_key: bytes):
        digest = hashlib.sha256(b"dataapi webhook secrets\x00" + secret_key).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()


def _newest(session: Session, company_id: int) -> WebhookSecret | None:
    return session.exec(select(WebhookSecret).where(WebhookSecret.company_id == company_id,
                                                    col(WebhookSecret.retired_at).is_(None))
                        .order_by(col(WebhookSecret.id).desc())).first()


def current_secret(session: Session, box: SecretBox, company_id: int) -> str:
    """The company's signing secret, created on first use."""
    row = _newest(session, company_id)
    if row is None:
        try:
            with session.begin_nested():  # a unique index admits one current secret: a racing creator wins
                row = WebhookSecret(company_id=company_id, secret_encrypted=box.seal(new_secret()))
                session.add(row)
        except IntegrityError:
            row = _newest(session, company_id)
    assert row is not None
    return box.open(row.secret_encrypted)


def rotate_secret(session: Session, box: SecretBox, company_id: int) -> str:
    """A new signing secret; the previous one keeps signing (a second signature) for the grace period."""
    now = utcnow()
    for row in session.exec(select(WebhookSecret).where(WebhookSecret.company_id == company_id,
                                                        col(WebhookSecret.retired_at).is_(None))).all():
        row.retired_at = now
        session.add(row)
    session.flush()  # retired before the new one exists: one current secret at any time
    secret = new_secret()
    session.add(WebhookSecret(company_id=company_id, secret_encrypted=box.seal(secret)))
    session.flush()
    return secret


def signing_secrets(session: Session, box: SecretBox, company_id: int, grace_seconds: float) -> list[str]:
    """The current secret first, then those retired less than ``grace_seconds`` ago."""
    secrets = [current_secret(session, box, company_id)]
    since = utcnow() - timedelta(seconds=grace_seconds)
    for row in session.exec(select(WebhookSecret).where(WebhookSecret.company_id == company_id,
                                                        col(WebhookSecret.retired_at).is_not(None))
                            .order_by(col(WebhookSecret.id).desc())).all():
        if row.retired_at is not None and as_utc(row.retired_at) > since:
            secrets.append(box.open(row.secret_encrypted))
    return secrets


def describe(session: Session, box: SecretBox, company_id: int, grace_seconds: float) -> dict:
    """What an admin sees: the current secret and how many earlier ones still sign."""
    secrets = signing_secrets(session, box, company_id, grace_seconds)
    return {"secret": secrets[0], "previous_secrets_signing": len(secrets) - 1,
            "grace_period_seconds": grace_seconds}


def rotate(session: Session, box: SecretBox, company_id: int, grace_seconds: float) -> dict:
    """Rotates the company's secret and describes the result (the Admin API's and the CLI's rotate)."""
    rotate_secret(session, box, company_id)
    return describe(session, box, company_id, grace_seconds)
