"""Jobs of the Jobs API (the vBrain dialect): who may see a job, and every query of the job record."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from dataapi.errors import DomainError
from dataapi.models import RepoJob, Repository, as_utc, utcnow
from dataapi.retention import expires_at
from dataapi.statuses import RepoJobStatus
from dataapi.timestamps import iso

STAMP = "%Y%m%d%H%M"  # from_date / to_date of the list route


def artifact_prefix(company_slug: str, job_id: str) -> str:
    return f"jobs/{company_slug}/{job_id}"


@dataclass(frozen=True)
class JobScope:
    """The jobs a Jobs API caller may see: its company's, under the application and client it names, and its own
    (its user's) unless it holds ``jobs:all_clients``. The application and client narrow what the caller may
    see; they never widen it."""

    company_id: int
    application_id: str
    client_id: str
    user_id: int
    all_users: bool = False

    def allows(self, job: RepoJob) -> bool:
        return (job.status != RepoJobStatus.DELETED and job.company_id == self.company_id
                and job.application_id == self.application_id and job.client_id == self.client_id
                and (self.all_users or job.user_id == self.user_id))


def find_job(session: Session, scope: JobScope, job_id: str) -> RepoJob | None:
    """The job when the scope allows it, else None: a job the caller may not see and a missing one look alike."""
    job = session.get(RepoJob, job_id) if len(job_id) <= 64 else None
    return job if job is not None and scope.allows(job) else None


def list_jobs(session: Session, scope: JobScope, repository_id: int,
              since: datetime | None, until: datetime | None) -> list[str]:
    query = select(RepoJob.id).where(
        RepoJob.company_id == scope.company_id, RepoJob.application_id == scope.application_id,
        RepoJob.client_id == scope.client_id, RepoJob.repository_id == repository_id,
        RepoJob.status != RepoJobStatus.DELETED)
    if not scope.all_users:
        query = query.where(RepoJob.user_id == scope.user_id)
    if since is not None:
        query = query.where(RepoJob.created_at >= since)
    if until is not None:
        query = query.where(RepoJob.created_at <= until)
    return list(session.exec(query.order_by(col(RepoJob.created_at), col(RepoJob.id))).all())


def parse_stamp(value: str | None, name: str) -> datetime | None:
    """YYYYMMDDHHMM (UTC), as the seed's from_date and to_date; None when absent."""
    if value is None:
        return None
    if not re.fullmatch(r"\d{12}", value):
        raise DomainError(f"Invalid {name}: expected YYYYMMDDHHMM")
    try:
        return datetime.strptime(value, STAMP).replace(tzinfo=UTC)
    except ValueError:
        raise DomainError(f"Invalid {name}: expected YYYYMMDDHHMM") from None


def describe_job(job: RepoJob, repo: Repository, retention_seconds: float | None = None) -> dict:
    """The seed's fields as they apply to one job, plus its id and status; given the retention, also when its
    result and files expire (``expires_at``, dataapi/retention.py; null while it runs)."""
    body = {
        "job_id": job.id, "status": job.status, "repository_id": repo.repo_id, "name": repo.name,
        "input": json.loads(job.inputs), "created_on": as_utc(job.created_at).strftime("%Y-%m-%d_%H:%M:%S"),
        "created_by": job.created_by, "params": job.has_params, "metadata": json.loads(job.job_metadata),
    }
    if retention_seconds is not None:
        body["expires_at"] = iso(expires_at(job.completed_at, retention_seconds))
    return body


def finish_job(session: Session, job_id: str, status: RepoJobStatus, error: str | None = None) -> None:
    """First outcome wins: a job already finished or deleted is left as it is."""
    job = session.get(RepoJob, job_id)
    if job is None or job.status != RepoJobStatus.PROCESSING:
        return
    job.status, job.error, job.completed_at = status, error, utcnow()
    session.add(job)
    session.flush()
