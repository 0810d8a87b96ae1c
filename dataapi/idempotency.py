"""``Idempotency-Key`` on both APIs' execute routes: the same key and the same request within the window name the
same job; the same key with another request is refused.

A key's scope is the company and the user of the caller's credential (a Data API token's user, a Jobs API key's
user): two users of a company, or two companies, never share a key. The job created for a key keeps the key and
the fingerprint of its request (``jobs`` and ``repo_jobs``: ``idempotency_key``, ``request_fingerprint``); one
live key per company and user (a unique index). The job id, which is the Temporal workflow id, is derived from
the scope, the key and the fingerprint, so a repeated request starts (or joins, with Temporal's id conflict
policy) the same workflow; a key used again after its window has its old job's key cleared and names a new job.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import orjson
from sqlmodel import Session, select

from dataapi.errors import DomainError
from dataapi.models import Job, RepoJob, as_utc, utcnow

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
J = TypeVar("J", Job, RepoJob)  # a job row of either API
_NAMESPACE = uuid.UUID("6f1d2a55-4c1e-4a55-9d0e-2f3b7c9a1e42")  # of the Jobs API's uuid5 job ids


class KeyReused(DomainError):
    status, code = 422, "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key names a job created by a different request")


class InvalidKey(DomainError):
    status, code = 400, "INVALID_IDEMPOTENCY_KEY"

    def __init__(self) -> None:
        super().__init__(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")


def parse_key(value: str | None) -> str | None:
    """The header's key, or None when absent; visible ASCII only (it is stored and compared as sent)."""
    if value is None:
        return None
    if not 0 < len(value) <= MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in value):
        raise InvalidKey()
    return value


def fingerprint(request: Any) -> str:
    """SHA-256 of the request as its route understands it (a JSON-safe value, keys sorted)."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Claim(Generic[J]):
    """What a keyed request does: create ``job_id`` (``existing`` None), or answer as ``existing`` did."""

    key: str
    fingerprint: str
    job_id: str
    existing: J | None = None

    @property
    def row_fields(self) -> dict[str, str]:
        return {"idempotency_key": self.key, "request_fingerprint": self.fingerprint}


def claim(session: Session, model: type[J], company_id: int, company_slug: str, user_id: int, key: str,
          fp: str, window: timedelta, now: datetime | None = None) -> Claim[J]:
    """The job this key names for this request: the live one (same fingerprint), a refusal (another
    fingerprint), or a new id (no live job; an expired one gives up its key)."""
    row = session.exec(select(model).where(model.company_id == company_id, model.user_id == user_id,
                                           model.idempotency_key == key)).first()
    previous = ""
    if row is not None:
        if as_utc(row.created_at) > (now or utcnow()) - window:
            if row.request_fingerprint != fp:
                raise KeyReused()
            return Claim(key, fp, row.id, row)
        row.idempotency_key, previous = None, row.id
        session.add(row)
        session.flush()
    seed = "\0".join((company_slug, str(user_id), key, fp, previous))
    if model is Job:
        job_id = hashlib.sha256(seed.encode()).hexdigest()[:24]  # the Data API's job id shape
    else:
        job_id = str(uuid.uuid5(_NAMESPACE, seed))
    return Claim(key, fp, job_id)
