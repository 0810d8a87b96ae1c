"""Repositories and their jobs (Jobs API, the vBrain dialect): the rules and every query of the domain."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from dataapi.models import RepoJob, Repository, as_utc, utcnow

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
RUNNERS = ("python", "sql")
STAMP = "%Y%m%d%H%M"  # from_date / to_date of the list route


class RepositoryError(ValueError):
    """An invalid repository definition (a 400 for admins, a clear line for the CLI)."""


def new_repo_id() -> str:
    """Like the seed's example: the creation time to the second and four random digits."""
    return utcnow().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10_000):04d}"


def artifact_prefix(company_slug: str, job_id: str) -> str:
    return f"jobs/{company_slug}/{job_id}"


def _json_object(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RepositoryError(f"'{name}' must be a JSON object")
    return value


def upsert_repository(session: Session, company_id: int, data: Any, validate_code) -> tuple[Repository, bool]:
    """Creates or replaces a repository from {id?, name, runner, code, default_params?, metadata?}.
    ``validate_code(runner, code)`` normalises the code or raises ValueError."""
    if not isinstance(data, dict):
        raise RepositoryError("a repository definition must be an object")
    unknown = set(data) - {"id", "name", "runner", "code", "default_params", "metadata"}
    if unknown:
        raise RepositoryError(f"unknown field {sorted(unknown)[0]!r}")
    repo_id = data.get("id") or new_repo_id()
    if not isinstance(repo_id, str) or not REPO_ID_RE.match(repo_id):
        raise RepositoryError("'id' must be 1 to 64 letters, digits, '-' or '_'")
    name, runner = data.get("name"), data.get("runner")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise RepositoryError("'name' is required (at most 200 characters)")
    if runner not in RUNNERS:
        raise RepositoryError("'runner' must be 'python' or 'sql'")
    try:
        code = validate_code(runner, data.get("code"))
    except ValueError as e:
        raise RepositoryError(f"'code': {e}") from None
    repo = find_repository(session, company_id, repo_id)
    created = repo is None
    if created:
        repo = Repository(company_id=company_id, repo_id=repo_id, name=name, runner=runner, code="{}")
    repo.name, repo.runner, repo.code = name, runner, json.dumps(code)
    repo.default_params = json.dumps(_json_object(data.get("default_params"), "default_params"))
    repo.repo_metadata = json.dumps(_json_object(data.get("metadata"), "metadata"))
    repo.updated_at = utcnow()
    session.add(repo)
    session.flush()
    return repo, created


def find_repository(session: Session, company_id: int, repo_id: str) -> Repository | None:
    return session.exec(select(Repository).where(Repository.company_id == company_id,
                                                 Repository.repo_id == repo_id)).first()


def describe_repository(repo: Repository, with_code: bool = False) -> dict:
    out = {"id": repo.repo_id, "name": repo.name, "runner": repo.runner,
           "default_params": json.loads(repo.default_params), "metadata": json.loads(repo.repo_metadata)}
    if with_code:
        out["code"] = json.loads(repo.code)
    return out


def list_repositories(session: Session, company_id: int) -> list[Repository]:
    return list(session.exec(select(Repository).where(Repository.company_id == company_id)
                             .order_by(Repository.repo_id)).all())


# --- jobs --------------------------------------------------------------------------------------------

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
        return (job.status != "deleted" and job.company_id == self.company_id
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
        RepoJob.client_id == scope.client_id, RepoJob.repository_id == repository_id, RepoJob.status != "deleted")
    if not scope.all_users:
        query = query.where(RepoJob.user_id == scope.user_id)
    if since is not None:
        query = query.where(RepoJob.created_at >= since)
    if until is not None:
        query = query.where(RepoJob.created_at <= until)
    return list(session.exec(query.order_by(RepoJob.created_at, RepoJob.id)).all())


def parse_stamp(value: str | None, name: str) -> datetime | None:
    """YYYYMMDDHHMM (UTC), as the seed's from_date and to_date; None when absent."""
    if value is None:
        return None
    if not re.fullmatch(r"\d{12}", value):
        raise ValueError(f"Invalid {name}: expected YYYYMMDDHHMM")
    try:
        return datetime.strptime(value, STAMP).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"Invalid {name}: expected YYYYMMDDHHMM") from None


def describe_job(job: RepoJob, repo: Repository) -> dict:
    """The seed's fields as they apply to one job, plus its id and status."""
    return {
        "job_id": job.id, "status": job.status, "repository_id": repo.repo_id, "name": repo.name,
        "input": json.loads(job.inputs), "created_on": as_utc(job.created_at).strftime("%Y-%m-%d_%H:%M:%S"),
        "created_by": job.created_by, "params": job.has_params, "metadata": json.loads(job.job_metadata),
    }


def finish_job(session: Session, job_id: str, status: str, error: str | None = None) -> None:
    """First outcome wins: a job already finished or deleted is left as it is."""
    job = session.get(RepoJob, job_id)
    if job is None or job.status != "processing":
        return
    job.status, job.error, job.completed_at = status, error, utcnow()
    session.add(job)
    session.flush()
