"""A Data API job: the durable record of one endpoint execution (the workflow id is its id), and the seed's job
object. The Jobs API's jobs (repository runs) live in ``dataapi.jobs_api``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlmodel import Session

from dataapi.data_api import statements
from dataapi.models import Job, utcnow
from dataapi.retention import expires_at
from dataapi.statuses import JobStatus
from dataapi.timestamps import iso


def create_job(conn: Connection, **fields: Any) -> None:
    """Inserts a job row (``processing``, created now unless given)."""
    values = {"status": JobStatus.PROCESSING, "created_at": utcnow(), **fields}
    _check_columns(values.keys())
    conn.execute(statements.JOB_CREATE, values)


def finish_job(conn: Connection, job_id: str, *, status: JobStatus, insert: dict | None = None, **fields: Any) -> None:
    """Records a job's outcome. A job still ``processing`` is updated; one already finished is left alone
    (the first outcome wins). ``insert`` creates the row when it does not exist yet (sync executions): one
    INSERT that does nothing on a conflict, then the guarded UPDATE only if the row was there. (RETURNING says
    whether a row went in: psycopg's rowcount for ON CONFLICT DO NOTHING is -1.)"""
    values = {"status": status, "completed_at": utcnow(), **fields}
    _check_columns(values.keys() | (insert or {}).keys())
    if insert is not None:
        statement = statements.JOB_INSERT_IF_ABSENT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
        created = conn.execute(statement, {"id": job_id, "created_at": values["completed_at"], **insert,
                                           **values}).first()
        if created is not None:
            return
    conn.execute(statements.JOB_FINISH, {"finished_id": job_id, **values})


def find_job(session: Session, company_id: int, endpoint_id: int, job_id: str) -> Job | None:
    job = session.get(Job, job_id)
    if job is None or job.company_id != company_id or job.endpoint_id != endpoint_id \
            or job.status == JobStatus.DELETED:
        return None
    return job


def job_body(job: Job, result: bytes | None, retention_seconds: float | None = None) -> dict[str, Any]:
    """The seed's job object (GET job, and the body of its callback); ``result`` is the stored JSON document.
    Given the retention, also ``expires_at`` (dataapi/retention.py; null while the job runs)."""
    body = {
        "job_id": job.id, "status": job.status,
        "result": orjson.Fragment(result) if job.status == JobStatus.COMPLETED and result is not None else None,
        "error": job.error if job.status == JobStatus.FAILED else None,
        "created_at": iso(job.created_at), "completed_at": iso(job.completed_at),
    }
    if retention_seconds is not None:
        body["expires_at"] = iso(expires_at(job.completed_at, retention_seconds))
    return body


def _check_columns(names: Iterable[str]) -> None:
    """Values bound to the prebuilt job statements must name columns: a misspelt one would be dropped unseen."""
    unknown = set(names) - statements.JOB_COLUMNS
    if unknown:
        raise ValueError(f"not a job column: {sorted(unknown)}")
