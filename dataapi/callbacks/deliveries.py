"""The delivery log of callbacks: one row per delivery (a webhook-id), one per attempt."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from dataapi.models import CallbackAttempt, CallbackDelivery, Job, utcnow
from dataapi.statuses import AttemptOutcome, DeliveryStatus
from dataapi.timestamps import iso


def open_delivery(session: Session, delivery_id: str, job: Job) -> CallbackDelivery:
    delivery = session.get(CallbackDelivery, delivery_id)
    if delivery is None:
        if job.callback_url is None:
            raise ValueError(f"job {job.id} has no callback URL to deliver to")
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
    if outcome == AttemptOutcome.DELIVERED:
        delivery.status, delivery.finished_at = DeliveryStatus.DELIVERED, utcnow()
    elif next_attempt_at is None:
        delivery.status, delivery.finished_at = DeliveryStatus.FAILED, utcnow()
    session.add(delivery)
    session.flush()


def latest_delivery(session: Session, job_id: str) -> CallbackDelivery | None:
    return session.exec(select(CallbackDelivery).where(CallbackDelivery.job_id == job_id)
                        .order_by(col(CallbackDelivery.created_at).desc(), col(CallbackDelivery.id).desc())).first()


def describe_delivery(delivery: CallbackDelivery | None) -> dict:
    """The ``callback`` object of GET job. Before the first attempt is recorded it reads as pending."""
    if delivery is None:
        return {"status": DeliveryStatus.PENDING, "webhook_id": None, "attempts": 0, "last_http_status": None,
                "next_attempt_at": None}
    return {"status": delivery.status, "webhook_id": delivery.id, "attempts": delivery.attempts,
            "last_http_status": delivery.last_status_code, "next_attempt_at": iso(delivery.next_attempt_at)}


def attempts_of(session: Session, delivery_id: str) -> list[CallbackAttempt]:
    return list(session.exec(select(CallbackAttempt).where(CallbackAttempt.delivery_id == delivery_id)
                             .order_by(col(CallbackAttempt.attempt), col(CallbackAttempt.id))).all())
