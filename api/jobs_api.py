"""``/api/v1/job``: the Jobs API (vBrain dialect). Identity comes from headers; errors are ``{"error": ...}``.

``x-api-key`` carries an integration user's credential in one header: ``<api_key>.<api_secret>`` (the same key
and secret as the Data API's login). ``organization_id`` is the company slug and must be the key's company;
``username`` must be the key's user name (403 otherwise). A job belongs to the user whose key created it: only
that user, or a holder of ``jobs:all_clients``, sees it, and then only under the ``application_id`` and
``client_id`` it was created with. Anyone else gets the plain 404 of a missing job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from api.errors import JobsApiError
from api.openapi import JOBS_ERROR
from api.reconcile import reconcile
from api.requests import client_address
from dataapi import identity, jobs, temporal
from dataapi.artifacts import ArtifactNotFound
from dataapi.db import session_scope
from dataapi.messages import JobInput
from dataapi.models import RepoJob, Repository
from dataapi.uploads import UploadError, UploadLimits, accept_upload
from workflows.job import RepositoryJobWorkflow

log = logging.getLogger("dataapi.jobs_api")
IDENTITY_HEADERS = ("username", "organization_id", "application_id", "client_id", "x-api-key")
NOT_FINISHED = {"message": "Job not yet finished"}


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


def _json(content, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _header(request: Request, name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise JobsApiError(400, f"Missing {name}")
    if len(value) > 200 or any(ord(c) < 32 for c in value):
        raise JobsApiError(400, f"Invalid {name}")
    return value


def _utf8(value: str) -> str:
    """Header values arrive decoded as Latin-1; a client sending a UTF-8 user name (``joão``) means that."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


async def _caller(request: Request, action: str, with_repository: bool = False) -> Caller:
    ctx = request.app.state.ctx
    names = (*IDENTITY_HEADERS, "repository_id") if with_repository else IDENTITY_HEADERS
    values = {name: _header(request, name) for name in names}
    key_id, _, secret = values["x-api-key"].partition(".")
    address = client_address(request)

    def check() -> Caller:
        with session_scope(ctx.engine) as session:
            principal = identity.authenticate_api_key(session, ctx.hasher, values["organization_id"], key_id, secret)
            # The key's own user, and none other: jobs are owned by user, so the header cannot pick another.
            if _utf8(values["username"]) != principal.user.name:
                log.info("Jobs API: username header is not the user of key %s", key_id[:8])
                raise JobsApiError(403, "username does not match the API key")
            if action not in principal.actions:
                raise JobsApiError(403, "Forbidden")
            repo = None
            if with_repository:
                repo = jobs.find_repository(session, principal.company.id, values["repository_id"])
                if repo is None:
                    raise JobsApiError(404, "Invalid repository_id")
            scope = jobs.JobScope(principal.company.id, values["application_id"], values["client_id"],
                                  principal.user.id, all_users="jobs:all_clients" in principal.actions)
            return Caller(principal.company.slug, principal.user.name, principal.api_key.id, scope, repo)

    # The secret is checked first: a correct one is never refused, whoever failed before it. A wrong one counts
    # against its (key id, client address) pair and its address, and past their budget is a 429.
    try:
        caller = await run_in_threadpool(check)
    except identity.AuthFailed:
        if (wait := ctx.limiter.login_failed(address, key_id)) is not None:
            raise JobsApiError(429, "Too many failed attempts; retry later", {"Retry-After": str(wait)}) from None
        raise JobsApiError(401, "Invalid API key") from None
    ctx.limiter.login_succeeded(address, key_id)
    return caller


def _load_job(request: Request, caller: Caller) -> tuple[RepoJob, Repository]:
    with session_scope(request.app.state.ctx.engine) as session:
        job = jobs.find_job(session, caller.scope, request.path_params["job_id"])
        if job is None:
            raise JobsApiError(404, "Invalid job_id")
        return job, session.get(Repository, job.repository_id)


async def _job(request: Request, action: str) -> tuple[Caller, RepoJob, Repository]:
    caller = await _caller(request, action)
    job, repo = await run_in_threadpool(_load_job, request, caller)
    if job.status == "processing":
        job = await _reconcile(request.app.state.ctx, job)
    return caller, job, repo


async def _reconcile(ctx, job: RepoJob) -> RepoJob:
    return await reconcile(ctx, job, lambda session, job_id, reason: jobs.finish_job(
        session, job_id, "failed", reason))


# --- routes ------------------------------------------------------------------------------------------

_LIST_PARAMS = {"from_date", "to_date"}


async def list_jobs(request: Request) -> Response:
    caller = await _caller(request, "jobs:read", with_repository=True)
    unknown = sorted(set(request.query_params) - _LIST_PARAMS)
    if unknown:  # a misspelt filter (fromDate, from) must not silently list everything
        raise JobsApiError(400, f"Unknown query parameter '{unknown[0]}' (use from_date and to_date)")
    try:
        since = jobs.parse_stamp(request.query_params.get("from_date"), "from_date")
        until = jobs.parse_stamp(request.query_params.get("to_date"), "to_date")
    except ValueError as e:
        raise JobsApiError(400, str(e)) from None
    if until is not None:
        until = until + timedelta(seconds=59.999999)  # to_date names a whole minute

    def query():
        with session_scope(request.app.state.ctx.engine) as session:
            return jobs.list_jobs(session, caller.scope, caller.repository.id, since, until)

    return _json(await run_in_threadpool(query))


def _json_field(value, name: str) -> dict | None:
    """``params`` and ``metadata`` form fields: a JSON object, as text or as an uploaded .json part."""
    if value is None:
        return None
    if isinstance(value, UploadFile):
        value = value.file.read((1 << 20) + 1)
    if len(value) > 1 << 20:
        raise JobsApiError(400, f"{name} is larger than 1 MiB")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise JobsApiError(400, f"{name} must be a JSON object") from None
    if not isinstance(data, dict):
        raise JobsApiError(400, f"{name} must be a JSON object")
    return data


def _limited(request: Request, limit: int) -> Request:
    """The same request, whose body stream raises 413 past ``limit`` bytes (chunked bodies included)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise JobsApiError(413, f"Request body larger than {limit} bytes")
    seen = 0

    async def receive():
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise JobsApiError(413, f"Request body larger than {limit} bytes")
        return message

    return Request(request.scope, receive)


async def execute(request: Request) -> Response:
    ctx = request.app.state.ctx
    settings = ctx.settings
    caller = await _caller(request, "jobs:execute", with_repository=True)
    ctype = request.headers.get("content-type", "")
    # Every field is optional: a request without a body creates a job with the default params.
    if ctype and not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise JobsApiError(415, "Content-Type must be multipart/form-data")
    body = _limited(request, settings.upload_max_bytes)
    async with body.form(max_files=1, max_fields=10) as form:
        unknown = set(form.keys()) - {"file", "params", "metadata"}
        if unknown:
            raise JobsApiError(400, f"Unknown form field {sorted(unknown)[0]}")
        repeated = sorted(name for name in set(form.keys()) if len(form.getlist(name)) > 1)
        if repeated:  # which of the values was meant is anybody's guess: none is taken
            raise JobsApiError(400, f"Form field {repeated[0]} sent more than once")
        upload = form.get("file")
        if upload is not None and not isinstance(upload, UploadFile):
            raise JobsApiError(400, "file must be a file upload")
        params = _json_field(form.get("params"), "params")
        metadata = _json_field(form.get("metadata"), "metadata") or {}
        job_id = str(uuid.uuid4())
        prefix = jobs.artifact_prefix(caller.company_slug, job_id)
        inputs = await run_in_threadpool(_store_inputs, ctx, prefix, upload)
    repo = caller.repository
    merged = {**json.loads(repo.default_params), **(params or {})}

    def record() -> None:
        ctx.artifacts.put_bytes(f"{prefix}/params.json", orjson.dumps(merged))
        ctx.artifacts.put_bytes(f"{prefix}/repo.json", orjson.dumps({"runner": repo.runner,
                                                                     "code": json.loads(repo.code)}))
        with session_scope(ctx.engine) as session:
            session.add(RepoJob(id=job_id, company_id=caller.company_id, repository_id=repo.id,
                                application_id=caller.scope.application_id, client_id=caller.scope.client_id,
                                created_by=caller.username, user_id=caller.scope.user_id,
                                api_key_id=caller.api_key_id, inputs=json.dumps(inputs),
                                params=json.dumps(merged), has_params=params is not None,
                                job_metadata=json.dumps(metadata)))

    await run_in_threadpool(record)
    inp = JobInput(job_id, caller.company_slug, prefix, inputs, settings.job_time_limit_seconds,
                   settings.job_memory_bytes, settings.job_heartbeat_seconds)
    attributes = TypedSearchAttributes([
        SearchAttributePair(temporal.SA_COMPANY, caller.company_slug), SearchAttributePair(temporal.SA_KIND, "job"),
        SearchAttributePair(temporal.SA_REPOSITORY, repo.repo_id)])
    client = await ctx.temporal()
    try:
        await client.start_workflow(RepositoryJobWorkflow.run, inp, id=job_id, task_queue=settings.task_queue_jobs,
                                    search_attributes=attributes)
    except Exception:  # Temporal unreachable, say: the caller gets an error, so no row may stay "processing"
        await run_in_threadpool(_fail_unstarted, ctx, job_id)
        raise
    return _json({"message": "Job created", "job_id": job_id}, 201)


def _fail_unstarted(ctx, job_id: str) -> None:
    with session_scope(ctx.engine) as session:
        jobs.finish_job(session, job_id, "failed", "Job could not be started")


def _store_inputs(ctx, prefix: str, upload: UploadFile | None) -> list[str]:
    """Validates the upload on disk (streamed, never whole in memory) and stores the accepted inputs.
    A bad file is a 400 and nothing is stored."""
    if upload is None:
        return []
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        raw = Path(tmp) / "upload"
        with raw.open("wb") as f:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, f, 1 << 20)
        try:
            names = accept_upload(raw, upload.filename or "input", Path(tmp) / "inputs", UploadLimits())
        except UploadError as e:
            raise JobsApiError(400, str(e)) from None
        for name in names:
            ctx.artifacts.put_file(f"{prefix}/inputs/{name}", Path(tmp) / "inputs" / name)
        return names


async def get_job(request: Request) -> Response:
    _, job, repo = await _job(request, "jobs:read")
    return _json(jobs.describe_job(job, repo))


async def delete_job(request: Request) -> Response:
    ctx = request.app.state.ctx
    caller = await _caller(request, "jobs:delete")
    job, _ = await run_in_threadpool(_load_job, request, caller)

    def mark_deleted():
        with session_scope(ctx.engine) as session:
            row = session.get(RepoJob, job.id)
            row.status = "deleted"
            session.add(row)

    await run_in_threadpool(mark_deleted)
    if job.status == "processing":  # the worker kills the process and removes its folder
        client = await ctx.temporal()
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(job.id).cancel()
    try:
        await run_in_threadpool(ctx.artifacts.delete_prefix, jobs.artifact_prefix(caller.company_slug, job.id))
    except OSError:
        log.exception("deleting the files of job %s", job.id)
        raise JobsApiError(500, "Error deleting job folder") from None
    return _json({"message": "Jobs deleted"})


async def _artifact(ctx, caller: Caller, job: RepoJob, name: str, media_type: str, filename: str | None = None):
    """Streams a stored file: from disk for the local store, chunk by chunk from S3."""
    key = f"{jobs.artifact_prefix(caller.company_slug, job.id)}/{name}"
    path = ctx.artifacts.local_path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename)
    try:
        chunks = await run_in_threadpool(ctx.artifacts.open_stream, key)
    except ArtifactNotFound:
        raise JobsApiError(500, "Job failed" if job.status == "failed" else "Job files are missing") from None
    headers = {"content-disposition": f'attachment; filename="{filename}"'} if filename else None
    return StreamingResponse(iterate_in_threadpool(chunks), media_type=media_type, headers=headers)


def _finished(job: RepoJob) -> Response | None:
    if job.status == "processing":
        return _json(NOT_FINISHED, 202)
    if job.status == "failed":
        return _json({"error": "Job failed"}, 500)
    return None


async def get_result(request: Request) -> Response:
    caller, job, _ = await _job(request, "jobs:read")
    return _finished(job) or await _artifact(request.app.state.ctx, caller, job, "result.json", "application/json")


async def get_params(request: Request) -> Response:
    caller, job, _ = await _job(request, "jobs:read")
    return await _artifact(request.app.state.ctx, caller, job, "params.json", "application/json")


async def get_output(request: Request) -> Response:
    caller, job, _ = await _job(request, "jobs:read")
    return _finished(job) or await _artifact(request.app.state.ctx, caller, job, "output.zip", "application/zip",
                                       f"{job.id}-output.zip")


async def get_logs(request: Request) -> Response:
    """Logs stay downloadable when the job failed; while it runs there is nothing packed yet (202)."""
    caller, job, _ = await _job(request, "jobs:read")
    if job.status == "processing":
        return _json(NOT_FINISHED, 202)
    return await _artifact(request.app.state.ctx, caller, job, "logs.zip", "application/zip", f"{job.id}-logs.zip")


PREFIX = "/api/v1/job"
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


_HEADER_DOCS = {
    "username": "The API key's user name (else 403); the job's created_by",
    "organization_id": "The company slug of the API key (else 401)",
    "application_id": "Application: a job is visible only under the one it was created with",
    "client_id": "Client: a job is visible only under the one it was created with",
    "x-api-key": "`<api_key>.<api_secret>`; its user owns the jobs it creates (a holder of jobs:all_clients "
                 "sees every user's)",
    "repository_id": "The repository's id",
}


def _headers(with_repository: bool = False) -> list[dict]:
    names = (*IDENTITY_HEADERS, "repository_id") if with_repository else IDENTITY_HEADERS
    return [{"name": n, "in": "header", "required": True, "description": _HEADER_DOCS[n],
             "schema": {"type": "string"}} for n in names]


def _resp(ok_schema: dict | None, *errors: int, ok: int = 200, media: str = "application/json") -> dict:
    out = {str(ok): {"description": "OK", "content": {media: {"schema": ok_schema or {"type": "object"}}}}}
    for status in errors:
        body = {"type": "object", "properties": {"message": {"type": "string"}}} if status == 202 else JOBS_ERROR
        out[str(status)] = {"description": _ERROR_DOCS.get(status, "See the Jobs API reference"),
                            "content": {"application/json": {"schema": body}}}
        if status == 429:
            out[str(status)]["headers"] = {"Retry-After": {"description": "Seconds to wait",
                                                           "schema": {"type": "integer"}}}
    return out


_ERROR_DOCS = {
    401: "Invalid API key (or not of organization_id's company)",
    403: "The key lacks the permission, or username is not the key's user name",
    404: "No such repository, or no such job visible to this key under this application and client",
    429: "Too many wrong secrets for this key id from this address (a correct secret is never refused)",
}


_JOB_ID = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_ZIP = {"type": "string", "format": "binary"}
_STD = (400, 401, 403, 404, 429, 503)  # 503: the metadata store or Temporal is unreachable


def _op(summary: str, responses: dict, params: list, body: dict | None = None) -> dict:
    op = {"summary": summary, "tags": ["jobs"], "security": [{"apiKey": []}], "parameters": params,
          "responses": responses}
    if body:
        op["requestBody"] = body
    return op


_MULTIPART = {"required": False, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary", "description": "A ZIP of inputs, or one .csv, .xlsx or .json"},
    "params": {"type": "string", "description": "JSON object of parameters"},
    "metadata": {"type": "string", "description": "JSON object of metadata"}}}}}}
_QUERY = [{"name": n, "in": "query", "required": False, "schema": {"type": "string", "pattern": r"^\d{12}$"}}
          for n in ("from_date", "to_date")]
OPENAPI = {
    PREFIX: {"get": _op("List the jobs of a repository for this organization, application and client",
                        _resp({"type": "array", "items": {"type": "string"}}, *_STD), _headers(True) + _QUERY)},
    PREFIX + "/execute": {"post": _op("Create a job (multipart: file, params, metadata)",
                                      _resp(None, *_STD, 413, 415, ok=201), _headers(True), _MULTIPART)},
    PREFIX + "/{job_id}": {
        "get": _op("A job's details", _resp(None, *_STD), _JOB_ID + _headers()),
        "delete": _op("Delete a job (a running one is cancelled)", _resp(None, *_STD, 500), _JOB_ID + _headers())},
    PREFIX + "/{job_id}/result": {"get": _op("A finished job's result JSON", _resp(None, *_STD, 202, 500),
                                             _JOB_ID + _headers())},
    PREFIX + "/{job_id}/params": {"get": _op("A job's params JSON", _resp(None, *_STD), _JOB_ID + _headers())},
    PREFIX + "/{job_id}/output": {"get": _op("A finished job's output folder as a ZIP",
                                             _resp(_ZIP, *_STD, 202, 500, media="application/zip"),
                                             _JOB_ID + _headers())},
    PREFIX + "/{job_id}/logs": {"get": _op("A job's logs (stdout, stderr, platform steps) as a ZIP",
                                           _resp(_ZIP, *_STD, 202, media="application/zip"), _JOB_ID + _headers())},
}
