"""The rules of the Jobs API: who the caller is, what a new job records before its workflow starts, and what
deleting a job does. The HTTP layer (api/jobs_api.py) parses the request, calls these and starts workflows.

A job belongs to the user whose key created it: only that user, or a holder of ``jobs:all_clients``, sees it,
and then only under the ``application_id`` and ``client_id`` it was created with (``jobs.JobScope``)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import orjson
from sqlmodel import Session

from dataapi.errors import DomainError, Forbidden, NotFound
from dataapi.identity.service import SecretHasher, authenticate_api_key
from dataapi.jobs_api import jobs
from dataapi.jobs_api.repositories import find_repository
from dataapi.jobs_api.uploads import UploadError, UploadLimits, accept_upload
from dataapi.messages import JobInput
from dataapi.models import RepoJob, Repository, pk
from dataapi.settings import Settings
from dataapi.statuses import RepoJobStatus
from dataapi.storage.base import ArtifactStore

log = logging.getLogger("dataapi.jobs_api")


@dataclass(frozen=True)
class Caller:
    company_slug: str
    username: str  # the authenticated user's name (the header was checked against it)
    api_key_id: int
    scope: jobs.JobScope
    repository: Repository | None = None

    @property
    def company_id(self) -> int:
        return self.scope.company_id


@dataclass(frozen=True)
class Identity:
    """What the caller's headers say: its organization (company slug), its key and secret, who it claims to be,
    the application and client it acts for, and the repository it names (for the routes that take one)."""

    organization_id: str
    key_id: str
    secret: str
    username: str
    application_id: str
    client_id: str
    repository_id: str | None = None


def authenticate(session: Session, hasher: SecretHasher, who: Identity, action: str) -> Caller:
    """The caller behind a key, holding ``action``; ``identity.service.AuthFailed`` for a refused key."""
    principal = authenticate_api_key(session, hasher, who.organization_id, who.key_id, who.secret)
    # The key's own user, and none other: jobs are owned by user, so the header cannot pick another.
    if who.username != principal.user.name:
        log.info("Jobs API: username header is not the user of key %s", who.key_id[:8])
        raise Forbidden("username does not match the API key")
    if action not in principal.actions:
        raise Forbidden("Forbidden")
    repo = None
    if who.repository_id is not None:
        repo = find_repository(session, pk(principal.company), who.repository_id)
        if repo is None:
            raise NotFound("Invalid repository_id")
    scope = jobs.JobScope(pk(principal.company), who.application_id, who.client_id, pk(principal.user),
                          all_users="jobs:all_clients" in principal.actions)
    assert principal.api_key is not None
    return Caller(principal.company.slug, principal.user.name, pk(principal.api_key), scope, repo)


# --- reading -------------------------------------------------------------------------------------------

def list_jobs(session: Session, caller: Caller, from_date: str | None, to_date: str | None) -> list[str]:
    """The ids of the caller's jobs of its repository created in [from_date, to_date] (YYYYMMDDHHMM, UTC)."""
    since = jobs.parse_stamp(from_date, "from_date")
    until = jobs.parse_stamp(to_date, "to_date")
    if until is not None:
        until = until + timedelta(seconds=59.999999)  # to_date names a whole minute
    assert caller.repository is not None
    return jobs.list_jobs(session, caller.scope, pk(caller.repository), since, until)


def get_job(session: Session, caller: Caller, job_id: str) -> tuple[RepoJob, Repository]:
    job = jobs.find_job(session, caller.scope, job_id)
    if job is None:
        raise NotFound("Invalid job_id")
    repo = session.get(Repository, job.repository_id)
    assert repo is not None
    return job, repo


def fail_lost(session: Session, job_id: str, reason: str) -> None:
    """A job whose workflow closed without an outcome, or never existed (see api/reconcile.py)."""
    jobs.finish_job(session, job_id, RepoJobStatus.FAILED, reason)


# --- creating ------------------------------------------------------------------------------------------

def stage_inputs(artifacts: ArtifactStore, prefix: str, upload: BinaryIO | None, filename: str | None) -> list[str]:
    """Validates the upload on disk (streamed, never whole in memory) and stores the accepted inputs under
    ``prefix``. A bad file is a 400 and nothing is stored."""
    if upload is None:
        return []
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        raw = Path(tmp) / "upload"
        with raw.open("wb") as f:
            upload.seek(0)
            shutil.copyfileobj(upload, f, 1 << 20)
        try:
            names = accept_upload(raw, filename or "input", Path(tmp) / "inputs", UploadLimits())
        except UploadError as e:
            raise DomainError(str(e)) from None
        for name in names:
            artifacts.put_file(f"{prefix}/inputs/{name}", Path(tmp) / "inputs" / name)
        return names


def record_job(session: Session, artifacts: ArtifactStore, settings: Settings, caller: Caller, job_id: str,
               inputs: list[str], params: dict | None, metadata: dict) -> JobInput:
    """Stores the job's params and code beside its inputs and writes its row (``processing``), before its
    workflow starts: polling never races the start. The workflow's input is returned."""
    repo = caller.repository
    assert repo is not None
    prefix = jobs.artifact_prefix(caller.company_slug, job_id)
    merged = {**json.loads(repo.default_params), **(params or {})}
    artifacts.put_bytes(f"{prefix}/params.json", orjson.dumps(merged))
    artifacts.put_bytes(f"{prefix}/repo.json", orjson.dumps({"runner": repo.runner, "code": json.loads(repo.code)}))
    session.add(RepoJob(id=job_id, company_id=caller.company_id, repository_id=pk(repo),
                        application_id=caller.scope.application_id, client_id=caller.scope.client_id,
                        created_by=caller.username, user_id=caller.scope.user_id,
                        api_key_id=caller.api_key_id, inputs=json.dumps(inputs),
                        params=json.dumps(merged), has_params=params is not None,
                        job_metadata=json.dumps(metadata)))
    return JobInput(job_id, caller.company_slug, prefix, inputs, settings.job_time_limit_seconds,
                    settings.job_memory_bytes, settings.job_heartbeat_seconds)


def fail_unstarted(session: Session, job_id: str) -> None:
    """The workflow could not be started: the caller gets an error, so no row may stay ``processing``."""
    jobs.finish_job(session, job_id, RepoJobStatus.FAILED, "Job could not be started")


# --- deleting ------------------------------------------------------------------------------------------

def delete_job(session: Session, caller: Caller, job_id: str) -> bool:
    """Marks the job deleted (it disappears from every read); True when it was still running, so that the caller
    cancels its workflow (the worker then kills the process and removes its folder)."""
    job, _ = get_job(session, caller, job_id)
    running = job.status == RepoJobStatus.PROCESSING
    job.status = RepoJobStatus.DELETED
    session.add(job)
    return running


def delete_files(artifacts: ArtifactStore, caller: Caller, job_id: str) -> None:
    try:
        artifacts.delete_prefix(jobs.artifact_prefix(caller.company_slug, job_id))
    except OSError:
        log.exception("deleting the files of job %s", job_id)
        raise DomainError("Error deleting job folder", status=500) from None

