"""How a Data API execute request runs, from its headers: ``Idempotency-Key`` (``dataapi.idempotency``) and
``Prefer: respond-async`` (``api.prefer``). ``plan`` prepares the execution (``service.prepare_execution``) with
what they ask, or answers a repeated request as its first answer did.

A keyed request's job id is derived from its key and request, and its workflow is started with Temporal's id
policies: ``USE_EXISTING`` joins the run a concurrent duplicate started, ``REJECT_DUPLICATE`` keeps a closed
run closed, whose outcome a repeated sync request then reads. A repeated request of an async job (or of a sync
one run as a job with ``Prefer``) answers 202 with the same ``job_id``; of a sync job, the job's own answer
(200 with its result, or the same error), waited for while it still runs. Keyed sync requests wait for their
workflow's result through Temporal (the fast lane's handoff is per request) and never answer from the result
cache: the key names an execution."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api import prefer
from api.context import context
from api.errors import JSONResponse
from api.schemas.data_api import PREFIX
from dataapi import idempotency
from dataapi.data_api.results import Format
from dataapi.errors import Conflict
from dataapi.jobs_api.service import Caller as JobsCaller
from dataapi.messages import QueryInput, QueryOutput
from dataapi.models import Job, RepoJob
from dataapi.statuses import ExecutionMode, JobStatus
from dataapi.sync import SyncLane

T = TypeVar("T")
Prepare = Callable[..., QueryInput]  # service.prepare_execution with the request's arguments bound
# A keyed request's workflow: join a running one, never start a closed one again.
START_OPTIONS: dict[str, Any] = {"id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
                                 "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE}
_THROUGH_TEMPORAL = SyncLane(enabled=False)


@dataclass(frozen=True)
class Plan:
    inp: QueryInput | None = None
    answer: Response | None = None  # a repeated request's answer, given without running anything
    keyed: bool = False
    wait: float | None = None  # Prefer: respond-async, wait=N applied: the seconds to wait before the 202

    @property
    def start_options(self) -> dict[str, Any]:
        return START_OPTIONS if self.keyed else {}

    def lane(self, lane: SyncLane) -> SyncLane:
        return _THROUGH_TEMPORAL if self.keyed else lane

    def joining(self, start: Callable[[], Awaitable[Any]], client: Client,
                job_id: str) -> Callable[[], Awaitable[Any]]:
        """``start``, which for a keyed request whose workflow already closed gives that workflow's handle."""
        async def start_or_join() -> Any:
            try:
                return await start()
            except WorkflowAlreadyStartedError:
                return client.get_workflow_handle(job_id, result_type=QueryOutput)

        return start_or_join if self.keyed else start

    async def continued(self, client: Client, request: Request, polling_url: str, fmt: Format) -> Response | None:
        """``Prefer: respond-async``: the answer after the wait (None when the preference does not apply)."""
        if self.wait is None or self.inp is None or not self.inp.continued:
            return None
        return await prefer.continued(request, client, self.inp, self.wait, polling_url, fmt)


async def plan(request: Request, namespace: str, slug: str, body: dict[str, Any], prepare: Prepare) -> Plan:
    ctx = context(request)
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    wait = prefer.respond_async_wait(request.headers.getlist(prefer.HEADER), ctx.settings.sync_timeout_seconds)
    options = {"respond_async": True} if wait is not None else {}
    if key is None:
        return Plan(inp=await run_in_threadpool(prepare, **options), wait=wait)
    claims = request.state.claims
    fp = idempotency.fingerprint({"endpoint": f"{namespace}/{slug}", "body": body})
    window = timedelta(seconds=ctx.settings.idempotency_window_seconds)
    for _ in range(2):  # a concurrent request with the same key inserts first at most once
        claim = await ctx.transaction(idempotency.claim, Job, claims.company_id, claims.company_slug, claims.user_id,
                                      key, fp, window)
        if claim.existing is not None:
            return await _repeated(claim.existing, namespace, slug, prepare)
        try:
            inp = await run_in_threadpool(prepare, job_id=claim.job_id, row=claim.row_fields, **options)
        except IntegrityError:  # the unique key (or the same job id) went in first: answer as that request
            continue
        return Plan(inp=dataclasses.replace(inp, cache_seconds=0), keyed=True, wait=wait)
    # Two requests reusing a key whose window just ended, each clearing it for its own job: the caller retries.
    raise Conflict("Another request with this Idempotency-Key is being recorded; retry", code="IDEMPOTENCY_KEY_IN_USE")


async def _repeated(job: Job, namespace: str, slug: str, prepare: Prepare) -> Plan:
    if job.mode == ExecutionMode.ASYNC:
        polling_url = f"{PREFIX}/{namespace}/{slug}/jobs/{job.id}"
        return Plan(answer=JSONResponse({"job_id": job.id, "status": JobStatus.PROCESSING,
                                         "polling_url": polling_url}, 202))
    # A sync job: its workflow is joined (running) or read (closed) under the same id; no row is written again.
    inp = await run_in_threadpool(prepare, job_id=job.id)
    return Plan(inp=dataclasses.replace(inp, cache_seconds=0), keyed=True)


# --- the Jobs API ----------------------------------------------------------------------------------------

async def claim_repo_job(request: Request, caller: JobsCaller, params: dict | None, metadata: dict,
                         upload: UploadFile | None) -> idempotency.Claim[RepoJob] | None:
    """The job a keyed Jobs API request names (None without a key): the request is its repository, application,
    client, params, metadata and the uploaded file's name and SHA-256."""
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    if key is None:
        return None
    assert caller.repository is not None
    digest = await run_in_threadpool(_digest, upload.file) if upload is not None else None
    fp = idempotency.fingerprint({
        "repository": caller.repository.repo_id, "application": caller.scope.application_id,
        "client": caller.scope.client_id, "params": params, "metadata": metadata,
        "file": [upload.filename, digest] if upload is not None else None})
    ctx = context(request)
    window = timedelta(seconds=ctx.settings.idempotency_window_seconds)
    return await ctx.transaction(idempotency.claim, RepoJob, caller.company_id, caller.company_slug,
                                 caller.scope.user_id, key, fp, window)


def _digest(f: BinaryIO) -> str:
    f.seek(0)
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


async def record_repo_job(request: Request, claim: idempotency.Claim[RepoJob] | None, staged: str,
                          record: Callable[..., T], *args: Any) -> T | None:
    """``record(session, *args)`` (``jobs_api.service.record_job``), the new row keeping the claim's key; None
    when a concurrent request with the same key and request recorded the same job first. The same key with
    another request that went first: 422, and the files staged for this one (under ``staged``) are removed."""
    ctx = context(request)

    def run(session: Session) -> T:
        out = record(session, *args)
        if claim is not None:
            for row in session.new:
                if isinstance(row, RepoJob) and row.id == claim.job_id:
                    row.idempotency_key, row.request_fingerprint = claim.key, claim.fingerprint
        return out

    try:
        return await ctx.transaction(run)
    except IntegrityError:
        if claim is None:
            raise
    if await ctx.transaction(lambda session: session.get(RepoJob, claim.job_id) is not None):
        return None  # the same job id: the same key and request, recorded by the other request
    await run_in_threadpool(ctx.artifacts.delete_prefix, staged)
    raise idempotency.KeyReused()
