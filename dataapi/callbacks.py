"""Webhook signing secrets (encrypted at rest, rotated with a grace period) and the delivery log of
callbacks: every query of the callbacks domain."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from dataapi.endpoints import iso
from dataapi.models import CallbackAttempt, CallbackDelivery, Job, WebhookSecret, as_utc, utcnow
from dataapi.webhooks import new_secret


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
                                                    WebhookSecret.retired_at.is_(None))
                        .order_by(WebhookSecret.id.desc())).first()


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
    return box.open(row.secret_encrypted)


def rotate_secret(session: Session, box: SecretBox, company_id: int) -> str:
    """A new signing secret; the previous one keeps signing (a second signature) for the grace period."""
    now = utcnow()
    for row in session.exec(select(WebhookSecret).where(WebhookSecret.company_id == company_id,
                                                        WebhookSecret.retired_at.is_(None))).all():
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
                                                        WebhookSecret.retired_at.is_not(None))
                            .order_by(WebhookSecret.id.desc())).all():
        if as_utc(row.retired_at) > since:
            secrets.append(box.open(row.secret_encrypted))
    return secrets


def describe_secrets(session: Session, box: SecretBox, company_id: int, grace_seconds: float) -> dict:
    secrets = signing_secrets(session, box, company_id, grace_seconds)
    return {"secret": secrets[0], "previous_secrets_signing": len(secrets) - 1,
            "grace_period_seconds": grace_seconds}


# --- deliveries ------------------------------------------------------------------------------------------

def open_delivery(session: Session, delivery_id: str, job: Job) -> CallbackDelivery:
    delivery = session.get(CallbackDelivery, delivery_id)
    if delivery is None:
        delivery = CallbackDelivery(id=delivery_id, job_id=job.id, company_id=job.company_id, url=job.callback_url)
        session.add(delivery)
        session.flush()
    return delivery


def record_attempt(session: Session, delivery: CallbackDelivery, attempt: int, outcome: str, status_code: int | None,
                   error: str | None, duration_ms: int, next_attempt_at: datetime | None) -> None:
    session.add(CallbackAttempt(delivery_id=delivery.id, attempt=attempt, outcome=outcome, status_code=status_code,
                                error=error, duration_ms=duration_ms))
    delivery.attempts = max(delivery.attempts, attempt)
    delivery.last_status_code, delivery.last_error = status_code, error
    delivery.next_attempt_at = next_attempt_at
    if outcome == "delivered":
        delivery.status, delivery.finished_at = "delivered", utcnow()
    elif next_attempt_at is None:
        delivery.status, delivery.finished_at = "failed", utcnow()
    session.add(delivery)
    session.flush()


def latest_delivery(session: Session, job_id: str) -> CallbackDelivery | None:
    return session.exec(select(CallbackDelivery).where(CallbackDelivery.job_id == job_id)
                        .order_by(CallbackDelivery.created_at.desc(), CallbackDelivery.id.desc())).first()


def describe_delivery(delivery: CallbackDelivery | None) -> dict:
    """The ``callback`` object of GET job. Before the first attempt is recorded it reads as pending."""
    if delivery is None:
        return {"status": "pending", "webhook_id": None, "attempts": 0, "last_http_status": None,
                "next_attempt_at": None}
    return {"status": delivery.status, "webhook_id": delivery.id, "attempts": delivery.attempts,
            "last_http_status": delivery.last_status_code, "next_attempt_at": iso(delivery.next_attempt_at)}


def attempts_of(session: Session, delivery_id: str) -> list[CallbackAttempt]:
    return list(session.exec(select(CallbackAttempt).where(CallbackAttempt.delivery_id == delivery_id)
                             .order_by(CallbackAttempt.attempt, CallbackAttempt.id)).all())
