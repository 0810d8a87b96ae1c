"""The caller's jobs of one endpoint (``GET .../{namespace}/{slug}/jobs``) and cancelling or deleting one of them
(``DELETE .../jobs/{job_id}``).

A caller lists and deletes only its own jobs (those its user created, sync and async alike); another user's job,
another company's and a missing one are the same 404. Listing is newest first with keyset pagination: the cursor
is opaque (URL-safe base64 of the last job's creation time and id), so pages stay stable while new jobs arrive.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, and_, col, or_, select

from dataapi.data_api import jobs, service
from dataapi.data_api.endpoints import find_endpoint
from dataapi.errors import DomainError
from dataapi.models import Job, as_utc
from dataapi.statuses import JobStatus
from dataapi.timestamps import iso

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
QUERY_PARAMS = frozenset({"status", "from", "to", "cursor", "limit"})
LISTED_STATUSES = (JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED)
CANCELLED = "Cancelled by caller"


class BadFilter(DomainError):
    status, code = 400, "INVALID_PARAMS"


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, str] | None = None  # the cursor: the last job of the previous page
    limit: int = DEFAULT_LIMIT


def parse_filter(query: dict[str, str]) -> JobFilter:
    """The list's query string: ``status``, ``from``/``to`` (ISO 8601, inclusive), ``cursor``, ``limit``."""
    unknown = sorted(set(query) - QUERY_PARAMS)
    if unknown:
        raise BadFilter(f"Unknown query parameter '{unknown[0]}' (use {', '.join(sorted(QUERY_PARAMS))})")
    status = query.get("status")
    if status is not None and status not in LISTED_STATUSES:
        raise BadFilter(f"status must be one of {', '.join(LISTED_STATUSES)}")
    since, until = _instant(query.get("from"), "from"), _instant(query.get("to"), "to")
    if since is not None and until is not None and since > until:
        raise BadFilter("from is later than to")
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadFilter(f"limit must be an integer from 1 to {MAX_LIMIT}")
    cursor = query.get("cursor")
    return JobFilter(status, since, until, _decode_cursor(cursor) if cursor is not None else None, int(raw_limit))


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"{name} must be an ISO 8601 date or date and time (UTC unless an offset is given)") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _encode_cursor(job: Job) -> str:
    raw = f"{as_utc(job.created_at).isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor is not one this API returned") from None
    if at.tzinfo is None or not service.JOB_ID_RE.match(job_id):
        raise BadFilter("cursor is not one this API returned")
    return at, job_id


def list_jobs(session: Session, caller: service.Caller, namespace: str, slug: str, f: JobFilter,
              polling_prefix: str) -> dict[str, Any]:
    """One page of the caller's jobs of the endpoint, newest first, and the cursor of the next page (or None)."""
    endpoint = find_endpoint(session, caller.company_id, namespace, slug)
    if endpoint is None:
        raise service.EndpointNotFound()
    query = select(Job).where(Job.company_id == caller.company_id, Job.endpoint_id == endpoint.id,
                              Job.user_id == caller.user_id, col(Job.status).in_(LISTED_STATUSES))
    if f.status is not None:
        query = query.where(Job.status == f.status)
    if f.since is not None:
        query = query.where(col(Job.created_at) >= f.since)
    if f.until is not None:
        query = query.where(col(Job.created_at) <= f.until)
    if f.after is not None:
        at, last_id = f.after
        query = query.where(or_(col(Job.created_at) < at, and_(col(Job.created_at) == at, col(Job.id) < last_id)))
    rows = list(session.exec(query.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(f.limit + 1)))
    page = rows[:f.limit]
    return {
        "jobs": [_summary(job, polling_prefix) for job in page],
        "next_cursor": _encode_cursor(page[-1]) if len(rows) > f.limit else None,
    }


def _summary(job: Job, polling_prefix: str) -> dict[str, Any]:
    """The seed's job fields without the result (read it at ``polling_url``)."""
    return {
        "job_id": job.id, "status": job.status, "mode": job.mode,
        "error": job.error if job.status == JobStatus.FAILED else None,
        "row_count": job.row_count if job.status == JobStatus.COMPLETED else None,
        "created_at": iso(job.created_at), "completed_at": iso(job.completed_at),
        "polling_url": f"{polling_prefix}/{job.id}",
    }


def own_job(session: Session, caller: service.Caller, namespace: str, slug: str, job_id: str) -> Job:
    """The caller's own job of the endpoint, or the contract's 404 (another user's job is just missing)."""
    job = service.job_of(session, caller, namespace, slug, job_id)
    if job.user_id != caller.user_id:
        raise service.JobNotFound()
    return job


@dataclass(frozen=True)
class Removal:
    """What a DELETE did to a job: ``cancelled`` (it was running: its workflow is cancelled next) or deleted
    (``artifacts``: its stored result, removed next)."""

    job: Job
    cancelled: bool
    artifacts: list[str]


def cancel_or_delete(session: Session, caller: service.Caller, namespace: str, slug: str, job_id: str) -> Removal:
    """A running job reads ``failed`` with ``Cancelled by caller`` (recorded with the guarded update: the first
    outcome wins, so the workflow's own record of the cancel changes nothing, and a query that completed just
    before keeps its result); a finished one is marked ``deleted`` and answers 404 from then on."""
    job = own_job(session, caller, namespace, slug, job_id)
    if job.status == JobStatus.PROCESSING:
        jobs.finish_job(session.connection(), job.id, status=JobStatus.FAILED, error=CANCELLED)
        session.refresh(job)
        if job.status == JobStatus.FAILED and job.error == CANCELLED:
            return Removal(job, True, [])
    artifacts = [key for key in (job.result_key, job.rows_key) if key]
    job.status = JobStatus.DELETED
    session.add(job)
    session.flush()
    return Removal(job, False, artifacts)
