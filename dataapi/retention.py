"""Retention: when a finished job expires, and what pruning removes.

A finished job of either API (Data API ``jobs``, Jobs API ``repo_jobs``) expires ``result_retention_seconds``
after it ended (``expires_at``, shown in its job body). From then on its routes answer 410 ``RESULT_EXPIRED``,
whether or not the prune has run yet. The prune (``prune``, run by the Temporal Schedule of ``workflows/prune.py``
and by ``dataapi prune``) then, in bounded batches, in this order:

1. expires finished jobs: deletes their result and files from the artifact store, then marks the row
   ``expired_at`` (a tombstone). A Data API job whose callback is still being delivered waits: the delivery
   reads the result;
2. removes callback deliveries (and their attempts) that finished ``result_retention_seconds`` ago;
3. removes tombstones ``tombstone_retention_seconds`` after they were marked (the job then answers 404, as a
   job that never existed);
4. removes refresh tokens a day past their expiry;
5. removes the result cache's expired index rows (``dataapi.data_api.cache``; their artifacts are their jobs'
   results, expired by step 1).

Apart from these, ``stale_work_folders`` names the job folders a jobs worker may remove (a second activity of the
schedule's workflow runs it on a jobs worker).

Each step selects a batch, does its work and records it with a guarded statement, so a batch interrupted half
way is done again by the next run, and two runs at once never count a row twice. A job still ``processing``
never expires. ``expires_at`` is computed from the setting, so a changed retention applies to every job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, delete, exists, func, or_, select, update
from sqlalchemy.sql import ColumnElement, Select
from sqlmodel import SQLModel

from dataapi.data_api import cache
from dataapi.db import rowcount
from dataapi.errors import DomainError
from dataapi.models import (
    CachedResult,
    CallbackAttempt,
    CallbackDelivery,
    Company,
    Job,
    RefreshToken,
    RepoJob,
    as_utc,
    utcnow,
)
from dataapi.statuses import DeliveryStatus, JobStatus, RepoJobStatus
from dataapi.storage.base import ArtifactStore
from dataapi.timestamps import iso

_J, _R, _D, _A, _T, _C, _K = (
    SQLModel.metadata.tables[str(m.__tablename__)]
    for m in (Job, RepoJob, CallbackDelivery, CallbackAttempt, RefreshToken, Company, CachedResult))
# A refresh token is kept this long past its expiry (as identity.purge_expired_refresh_tokens does).
REFRESH_TOKEN_GRACE = timedelta(days=1)


class ResultExpired(DomainError):
    status, code = 410, "RESULT_EXPIRED"


def expires_at(completed_at: datetime | None, retention_seconds: float) -> datetime | None:
    """When a job that ended at ``completed_at`` expires; None while it runs."""
    return as_utc(completed_at) + timedelta(seconds=retention_seconds) if completed_at is not None else None


def check_unexpired(job: Job | RepoJob, retention_seconds: float) -> None:
    """Raises the 410 of an expired job (a tombstone, or a finished job past its expiry the prune has not reached)."""
    end = expires_at(job.completed_at, retention_seconds)
    if job.expired_at is not None or (end is not None and end <= utcnow()):
        raise ResultExpired(f"The job's result expired at {iso(job.expired_at or end)}; results are kept "
                            f"{_span(retention_seconds)} after the job ends")


def _span(seconds: float) -> str:
    days, hours = seconds / 86_400, seconds / 3600
    return f"{days:g} days" if days >= 1 else f"{hours:g} hours" if hours >= 1 else f"{seconds:g} seconds"


@dataclass
class PruneCounts:
    """What one prune removed (or, dry, would remove), by kind."""

    data_jobs_expired: int = 0
    repo_jobs_expired: int = 0
    callback_deliveries: int = 0
    data_tombstones: int = 0
    repo_tombstones: int = 0
    refresh_tokens: int = 0
    cache_entries: int = 0
    work_folders: int = 0

    def add(self, other: PruneCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class Policy:
    """The cut-off times of one prune, fixed at its start so that a dry run and a run count the same rows."""

    now: datetime
    retention: timedelta
    tombstone: timedelta
    batch: int

    @classmethod
    def of(cls, retention_seconds: float, tombstone_seconds: float, batch: int,
           now: datetime | None = None) -> Policy:
        return cls(now or utcnow(), timedelta(seconds=retention_seconds), timedelta(seconds=tombstone_seconds), batch)

    @property
    def expired_before(self) -> datetime:
        return self.now - self.retention

    @property
    def removed_before(self) -> datetime:
        return self.now - self.tombstone


# --- what each step selects ----------------------------------------------------------------------------

def _data_jobs_to_expire(p: Policy) -> ColumnElement[bool]:
    pending = exists().where(_D.c.job_id == _J.c.id, _D.c.status == DeliveryStatus.PENDING)
    return and_(_J.c.status != JobStatus.PROCESSING, _J.c.expired_at.is_(None),
                _J.c.completed_at < p.expired_before, ~pending)


def _repo_jobs_to_expire(p: Policy) -> ColumnElement[bool]:
    ended = or_(_R.c.completed_at < p.expired_before,
                # a job deleted while it ran never records an end: its start stands in
                and_(_R.c.completed_at.is_(None), _R.c.status == RepoJobStatus.DELETED,
                     _R.c.created_at < p.expired_before))
    return and_(_R.c.status != RepoJobStatus.PROCESSING, _R.c.expired_at.is_(None), ended)


def _deliveries_to_remove(p: Policy) -> ColumnElement[bool]:
    return _D.c.finished_at < p.expired_before


def _tombstones(table: Table, p: Policy) -> ColumnElement[bool]:
    return table.c.expired_at < p.removed_before


def _tokens_to_remove(p: Policy) -> ColumnElement[bool]:
    return _T.c.expires_at < p.now - REFRESH_TOKEN_GRACE


def _count(engine: Engine, query: Select[Any]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def plan(engine: Engine, p: Policy) -> PruneCounts:
    """What ``prune`` would remove now (``dataapi prune --dry-run``)."""
    return PruneCounts(
        data_jobs_expired=_count(engine, select(_J.c.id).where(_data_jobs_to_expire(p))),
        repo_jobs_expired=_count(engine, select(_R.c.id).where(_repo_jobs_to_expire(p))),
        callback_deliveries=_count(engine, select(_D.c.id).where(_deliveries_to_remove(p))),
        data_tombstones=_count(engine, select(_J.c.id).where(_tombstones(_J, p))),
        repo_tombstones=_count(engine, select(_R.c.id).where(_tombstones(_R, p))),
        refresh_tokens=_count(engine, select(_T.c.jti).where(_tokens_to_remove(p))),
        cache_entries=_count(engine, select(_K.c.key).where(_K.c.expires_at < p.now)),
    )


# --- the steps ------------------------------------------------------------------------------------------

def _expire_data_jobs(engine: Engine, artifacts: ArtifactStore, p: Policy, progress: Callable[[], None]) -> int:
    with engine.connect() as conn:
        rows = conn.execute(select(_J.c.id, _J.c.result_key, _J.c.rows_key, _C.c.slug)
                            .join(_C, _C.c.id == _J.c.company_id)
                            .where(_data_jobs_to_expire(p)).limit(p.batch)).all()
    for job_id, result_key, rows_key, company in rows:
        for key in (result_key, rows_key, f"results/{company}/{job_id}"):
            if key:
                artifacts.delete_prefix(key)
        progress()
    return _mark_expired(engine, _J, [r[0] for r in rows], p)


def _expire_repo_jobs(engine: Engine, artifacts: ArtifactStore, p: Policy, progress: Callable[[], None]) -> int:
    with engine.connect() as conn:
        rows = conn.execute(select(_R.c.id, _C.c.slug).join(_C, _C.c.id == _R.c.company_id)
                            .where(_repo_jobs_to_expire(p)).limit(p.batch)).all()
    for job_id, company in rows:
        artifacts.delete_prefix(f"jobs/{company}/{job_id}")  # dataapi.jobs_api.jobs.artifact_prefix
        progress()
    return _mark_expired(engine, _R, [r[0] for r in rows], p)


def _mark_expired(engine: Engine, table: Table, ids: list[str], p: Policy) -> int:
    if not ids:
        return 0
    with engine.begin() as conn:
        return rowcount(conn.execute(update(table).where(table.c.id.in_(ids), table.c.expired_at.is_(None))
                                     .values(expired_at=p.now)))


def _delete_deliveries(conn: Any, delivery_ids: Iterable[str]) -> int:
    ids = list(delivery_ids)
    if not ids:
        return 0
    conn.execute(delete(_A).where(_A.c.delivery_id.in_(ids)))
    return rowcount(conn.execute(delete(_D).where(_D.c.id.in_(ids))))


def _remove_deliveries(engine: Engine, p: Policy) -> int:
    with engine.begin() as conn:
        ids = conn.execute(select(_D.c.id).where(_deliveries_to_remove(p)).limit(p.batch)).scalars()
        return _delete_deliveries(conn, ids)


def _remove_data_tombstones(engine: Engine, p: Policy) -> int:
    with engine.begin() as conn:
        ids = list(conn.execute(select(_J.c.id).where(_tombstones(_J, p)).limit(p.batch)).scalars())
        if not ids:
            return 0
        _delete_deliveries(conn, conn.execute(select(_D.c.id)
                                              .where(_D.c.job_id.in_(ids))).scalars())
        return rowcount(conn.execute(delete(_J).where(_J.c.id.in_(ids), _tombstones(_J, p))))


def _remove_repo_tombstones(engine: Engine, p: Policy) -> int:
    with engine.begin() as conn:
        ids = list(conn.execute(select(_R.c.id).where(_tombstones(_R, p)).limit(p.batch)).scalars())
        if not ids:
            return 0
        return rowcount(conn.execute(delete(_R).where(_R.c.id.in_(ids), _tombstones(_R, p))))


def _remove_tokens(engine: Engine, p: Policy) -> int:
    with engine.begin() as conn:
        jtis = list(conn.execute(select(_T.c.jti).where(_tokens_to_remove(p)).limit(p.batch)).scalars())
        if not jtis:
            return 0
        return rowcount(conn.execute(delete(_T).where(_T.c.jti.in_(jtis))))


def _remove_cache_entries(engine: Engine, p: Policy) -> int:
    with engine.begin() as conn:
        return cache.purge_expired(conn, p.now)


def prune(engine: Engine, artifacts: ArtifactStore, p: Policy,
          progress: Callable[[], None] = lambda: None) -> PruneCounts:
    """Removes what has expired, batch by batch (``progress`` is called after each batch and each job's artifacts,
    e.g. an activity's heartbeat); returns what this call removed."""
    steps: list[tuple[str, Callable[[], int]]] = [
        ("data_jobs_expired", lambda: _expire_data_jobs(engine, artifacts, p, progress)),
        ("repo_jobs_expired", lambda: _expire_repo_jobs(engine, artifacts, p, progress)),
        ("callback_deliveries", lambda: _remove_deliveries(engine, p)),
        ("data_tombstones", lambda: _remove_data_tombstones(engine, p)),
        ("repo_tombstones", lambda: _remove_repo_tombstones(engine, p)),
        ("refresh_tokens", lambda: _remove_tokens(engine, p)),
        ("cache_entries", lambda: _remove_cache_entries(engine, p)),
    ]
    counts = PruneCounts()
    for name, step in steps:
        while True:
            done = step()
            setattr(counts, name, getattr(counts, name) + done)
            progress()
            if done < p.batch:  # a short batch: nothing more (a concurrent run took the rest)
                break
    return counts


def stale_work_folders(engine: Engine, work_dir: Path) -> list[Path]:
    """The job folders under a jobs worker's ``work_dir`` that no running job owns: those a killed worker left
    (its job was retried elsewhere, or has ended), or of jobs that are gone. A running job's folder is its
    activity's to remove."""
    folders = [f for f in work_dir.iterdir() if f.is_dir()] if work_dir.is_dir() else []
    if not folders:
        return []
    with engine.connect() as conn:
        running = set(conn.execute(select(_R.c.id).where(
            _R.c.id.in_([f.name for f in folders]),
            _R.c.status == RepoJobStatus.PROCESSING)).scalars())
    return [f for f in folders if f.name not in running]


@dataclass
class PruneInput:
    """The prune workflow's input, as the schedule starts it: the jobs workers' queue, whose work folders it
    also prunes."""

    jobs_task_queue: str
