"""``/api/v1/job``: the Jobs API (vBrain dialect). Identity comes from headers; errors are ``{"error": ...}``.

``x-api-key`` carries an integration user's credential in one header: ``<api_key>.<api_secret>`` (the same key
and secret as the Data API's login). ``organization_id`` is the company slug and must be the key's company;
``username`` must be the key's user name (403 otherwise). Who sees which job is the domain's rule
(dataapi/jobs_api/service.py); anyone else gets the plain 404 of a missing job.
"""

from __future__ import annotations

import contextlib
import uuid

import orjson
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message
from temporalio.service import RPCError

from api import idempotency
from api import limits as execute_limits
from api.context import AppContext, context
from api.errors import jobs_body
from api.reconcile import reconcile
from api.requests import client_address
from api.schemas.jobs_api import IDENTITY_HEADERS, OPENAPI, PREFIX
from dataapi import retention
from dataapi.errors import DomainError
from dataapi.identity import service as identity
from dataapi.jobs_api import jobs, service
from dataapi.jobs_api.service import Caller
from dataapi.models import RepoJob, Repository
from dataapi.search_attributes import search_attributes
from dataapi.statuses import RepoJobStatus
from dataapi.storage.base import ArtifactNotFound
from workflows.job import RepositoryJobWorkflow

__all__ = ["OPENAPI", "PREFIX", "routes"]
NOT_FINISHED = {"message": "Job not yet finished"}
_LIST_PARAMS = {"from_date", "to_date"}


def _json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _refused(status: int, message: str) -> DomainError:
    return DomainError(message, status=status)


def _header(request: Request, name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise _refused(400, f"Missing {name}")
    if len(value) > 200 or any(ord(c) < 32 for c in value):
        raise _refused(400, f"Invalid {name}")
    return value


def _utf8(value: str) -> str:
    """Header values arrive decoded as Latin-1; a client sending a UTF-8 user name (``joão``) means that."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


async def _caller(request: Request, action: str, with_repository: bool = False) -> Caller:
    """The authenticated caller. The secret is checked first: a correct one is never refused, whoever failed
    before it. A wrong one counts against its (key id, client address) pair and its address, and past their
    budget is a 429."""
    ctx = context(request)
    names = (*IDENTITY_HEADERS, "repository_id") if with_repository else IDENTITY_HEADERS
    values = {name: _header(request, name) for name in names}
    key_id, _, secret = values["x-api-key"].partition(".")
    who = service.Identity(values["organization_id"], key_id, secret, _utf8(values["username"]),
                           values["application_id"], values["client_id"], values.get("repository_id"))
    address = client_address(request)
    try:
        caller = await ctx.transaction(service.authenticate, ctx.hasher, who, action)
    except identity.AuthFailed:
        raise identity.refusal(ctx.limiter, address, key_id, "Invalid API key") from None
    ctx.limiter.login_succeeded(address, key_id)
    return caller


async def _job(request: Request, action: str) -> tuple[Caller, RepoJob, Repository]:
    ctx = context(request)
    caller = await _caller(request, action)
    job, repo = await ctx.transaction(service.get_job, caller, request.path_params["job_id"])
    if job.status == RepoJobStatus.PROCESSING:
        job = await reconcile(ctx, job, service.fail_lost)
    retention.check_unexpired(job, ctx.settings.result_retention_seconds)  # 410 once it expired
    return caller, job, repo


# --- routes ------------------------------------------------------------------------------------------

async def list_jobs(request: Request) -> Response:
    caller = await _caller(request, "jobs:read", with_repository=True)
    unknown = sorted(set(request.query_params) - _LIST_PARAMS)
    if unknown:  # a misspelt filter (fromDate, from) must not silently list everything
        raise _refused(400, f"Unknown query parameter '{unknown[0]}' (use from_date and to_date)")
    q = request.query_params
    return _json(await context(request).transaction(service.list_jobs, caller, q.get("from_date"), q.get("to_date")))


def _json_field(value: str | UploadFile | None, name: str) -> dict | None:
    """``params`` and ``metadata`` form fields: a JSON object, as text or as an uploaded .json part."""
    if value is None:
        return None
    text = value.file.read((1 << 20) + 1) if isinstance(value, UploadFile) else value
    if len(text) > 1 << 20:
        raise _refused(400, f"{name} is larger than 1 MiB")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _refused(400, f"{name} must be a JSON object") from None
    if not isinstance(data, dict):
        raise _refused(400, f"{name} must be a JSON object")
    return data


def _limited(request: Request, limit: int) -> Request:
    """The same request, whose body stream raises 413 past ``limit`` bytes (chunked bodies included)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _refused(413, f"Request body larger than {limit} bytes")
    seen = 0

    async def receive() -> Message:
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _refused(413, f"Request body larger than {limit} bytes")
        return message

    return Request(request.scope, receive)


@execute_limits.with_quota_headers
async def execute(request: Request) -> Response:
    ctx = context(request)
    caller = await _caller(request, "jobs:execute", with_repository=True)
    execute_limits.admit(request, caller.company_id, caller.api_key_id, caller.scope.user_id)
    ctype = request.headers.get("content-type", "")
    # Every field is optional: a request without a body creates a job with the default params.
    if ctype and not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise _refused(415, "Content-Type must be multipart/form-data")
    body = _limited(request, ctx.settings.upload_max_bytes)
    async with body.form(max_files=1, max_fields=10) as form:
        unknown = set(form.keys()) - {"file", "params", "metadata"}
        if unknown:
            raise _refused(400, f"Unknown form field {sorted(unknown)[0]}")
        repeated = sorted(name for name in set(form.keys()) if len(form.getlist(name)) > 1)
        if repeated:  # which of the values was meant is anybody's guess: none is taken
            raise _refused(400, f"Form field {repeated[0]} sent more than once")
        upload = form.get("file")
        if upload is not None and not isinstance(upload, UploadFile):
            raise _refused(400, "file must be a file upload")
        params = _json_field(form.get("params"), "params")
        metadata = _json_field(form.get("metadata"), "metadata") or {}
        claim = await idempotency.claim_repo_job(request, caller, params, metadata, upload)  # Idempotency-Key
        if claim is not None and claim.existing is not None:
            return _json({"message": "Job created", "job_id": claim.job_id}, 201)
        job_id = claim.job_id if claim is not None else str(uuid.uuid4())
        inputs = await run_in_threadpool(service.stage_inputs, ctx.artifacts,
                                         jobs.artifact_prefix(caller.company_slug, job_id),
                                         upload.file if upload is not None else None,
                                         upload.filename if upload is not None else None)
    inp = await idempotency.record_repo_job(request, claim, jobs.artifact_prefix(caller.company_slug, job_id),
                                            service.record_job, ctx.artifacts, ctx.settings, caller, job_id, inputs,
                                            params, metadata)
    if inp is None:  # a concurrent request with the same key and request created this job
        return _json({"message": "Job created", "job_id": job_id}, 201)
    assert caller.repository is not None
    try:
        client = await ctx.temporal()
        await client.start_workflow(RepositoryJobWorkflow.run, inp, id=job_id, task_queue=ctx.settings.task_queue_jobs,
                                    search_attributes=search_attributes(caller.company_slug, "job",
                                                                        repository=caller.repository.repo_id),
                                    **(idempotency.START_OPTIONS if claim is not None else {}))
    except Exception:  # Temporal unreachable, say: the caller gets an error, so no row may stay "processing"
        await ctx.transaction(service.fail_unstarted, job_id)
        raise
    return _json({"message": "Job created", "job_id": job_id}, 201)


async def get_job(request: Request) -> Response:
    _, job, repo = await _job(request, "jobs:read")
    return _json(jobs.describe_job(job, repo, context(request).settings.result_retention_seconds))


async def delete_job(request: Request) -> Response:
    ctx = context(request)
    caller = await _caller(request, "jobs:delete")
    job_id = request.path_params["job_id"]
    running = await ctx.transaction(service.delete_job, caller, job_id)
    if running:  # the worker kills the process and removes its folder
        client = await ctx.temporal()
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(job_id).cancel()
    await run_in_threadpool(service.delete_files, ctx.artifacts, caller, job_id)
    return _json({"message": "Jobs deleted"})


async def _artifact(ctx: AppContext, caller: Caller, job: RepoJob, name: str, media_type: str,
                    filename: str | None = None) -> Response:
    """Streams a stored file: from disk for the local store, chunk by chunk from S3."""
    key = f"{jobs.artifact_prefix(caller.company_slug, job.id)}/{name}"
    path = ctx.artifacts.local_path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename)
    try:
        chunks = await run_in_threadpool(ctx.artifacts.open_stream, key)
    except ArtifactNotFound:
        raise _refused(500, "Job failed" if job.status == RepoJobStatus.FAILED else "Job files are missing") from None
    headers = {"content-disposition": f'attachment; filename="{filename}"'} if filename else None
    return StreamingResponse(iterate_in_threadpool(chunks), media_type=media_type, headers=headers)


def _finished(job: RepoJob) -> Response | None:
    if job.status == RepoJobStatus.PROCESSING:
        return _json(NOT_FINISHED, 202)
    if job.status == RepoJobStatus.FAILED:
        return _json(jobs_body("", "Job failed"), 500)  # the dialect's error body, with the request id
    return None


async def get_result(request: Request) -> Response:
    caller, job, _ = await _job(request, "jobs:read")
    return _finished(job) or await _artifact(context(request), caller, job, "result.json", "application/json")


async def get_params(request: Request) -> Response:
    caller, job, _ = await _job(request, "jobs:read")
    return await _artifact(context(request), caller, job, "params.json", "application/json")


async def get_output(request: Request) -> Response:
    caller, job, _ = await _job(request, "jobs:read")
    return _finished(job) or await _artifact(context(request), caller, job, "output.zip", "application/zip",
                                             f"{job.id}-output.zip")


async def get_logs(request: Request) -> Response:
    """Logs stay downloadable when the job failed; while it runs there is nothing packed yet (202)."""
    caller, job, _ = await _job(request, "jobs:read")
    if job.status == RepoJobStatus.PROCESSING:
        return _json(NOT_FINISHED, 202)
    return await _artifact(context(request), caller, job, "logs.zip", "application/zip", f"{job.id}-logs.zip")


routes = [
    Route(PREFIX, list_jobs, methods=["GET"]),
    Route(PREFIX + "/execute", execute, methods=["POST"]),
    Route(PREFIX + "/{job_id}", get_job, methods=["GET"]),
    Route(PREFIX + "/{job_id}", delete_job, methods=["DELETE"]),
    Route(PREFIX + "/{job_id}/result", get_result, methods=["GET"]),
    Route(PREFIX + "/{job_id}/params", get_params, methods=["GET"]),
    Route(PREFIX + "/{job_id}/output", get_output, methods=["GET"]),
    Route(PREFIX + "/{job_id}/logs", get_logs, methods=["GET"]),
]
