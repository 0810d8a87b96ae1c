"""``/api/v1/data-api``: execute visualization endpoints (sync or async) and poll async jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from datetime import timedelta

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from api.auth import requires
from api.errors import ApiError
from api.openapi import json_body, responses
from api.reconcile import reconcile
from api.requests import read_json_object
from dataapi import callbacks, temporal
from dataapi import endpoints as store
from dataapi.artifacts import ArtifactNotFound
from dataapi.callback_url import UnsafeCallbackUrl, check_url
from dataapi.db import session_scope
from dataapi.handoff import Handoff, sync_results
from dataapi.identity import valid_slug
from dataapi.messages import CallbackInput, QueryInput, QueryOutput
from dataapi.params import ParamError, coerce
from workflows.callback import CallbackWorkflow
from workflows.query import QueryWorkflow

log = logging.getLogger("dataapi.data_api")
JOB_ID_RE = re.compile(r"^[0-9a-f]{24}\Z")
_BODY_FIELDS = {"parameter_values", "callback_url"}
# Failures of the query that are the request's to fix (a narrower query, an endpoint definition to update):
# the activity's error type -> the code of the 422 that answers them.
_REFUSALS = {"ResultTooLarge": "RESULT_TOO_LARGE", "SqlNotAllowed": "SQL_NOT_ALLOWED"}
_HANDOFF_GRACE = 2.0  # seconds an eagerly started query may take before the result long-poll starts too


def endpoint_not_found() -> ApiError:
    return ApiError(404, "ENDPOINT_NOT_FOUND", "Endpoint does not exist, is inactive, or belongs to another company")


def job_not_found() -> ApiError:
    return ApiError(404, "JOB_NOT_FOUND", "Job does not exist or does not belong to the endpoint")


def _path(request: Request) -> tuple[str, str]:
    namespace, slug = request.path_params["namespace"], request.path_params["slug"]
    if not valid_slug(namespace) or not valid_slug(slug):
        raise endpoint_not_found()
    return namespace, slug


def check_callback(url, allow_cidrs: list[str], allow_hosts: list[str]) -> str:
    """Accepts an HTTPS URL whose host is not an internal or encoded address nor a special-use name (checked
    again, with DNS, at every delivery attempt)."""
    if not isinstance(url, str):
        raise ApiError(422, "INVALID_CALLBACK_URL", "callback_url must be an HTTPS URL")
    try:
        return check_url(url, allow_cidrs=allow_cidrs, allow_hosts=allow_hosts).url
    except UnsafeCallbackUrl as e:
        raise ApiError(422, "INVALID_CALLBACK_URL", f"callback_url refused: {e.reason}") from None


def _prepare(ctx, claims, namespace: str, slug: str, body: dict) -> QueryInput:
    """Loads the endpoint, applies the caller's share context and binds the parameters (blocking); an async
    job's row is written here, before its workflow starts, so polling never races the start."""
    with ctx.engine.begin() as conn:
        endpoint = store.executable_endpoint(conn, claims.company_id, namespace, slug)
        if endpoint is None:
            raise endpoint_not_found()
        share = store.effective_share_context(conn, claims.company_id, claims.user_id, claims.api_key_id,
                                              endpoint.id)
        specs = store.specs_of(endpoint)
        try:
            params = coerce(specs, body.get("parameter_values"), share)
        except ParamError as e:
            raise ApiError(422, "INVALID_PARAMETER", e.message) from None
        settings = ctx.settings
        mode = endpoint.execution_mode
        callback = body.get("callback_url") if mode == "async" else None
        inp = QueryInput(
            job_id=secrets.token_hex(12), company_id=claims.company_id, company_slug=claims.company_slug,
            endpoint_id=endpoint.id, endpoint=f"{namespace}/{slug}", sql=endpoint.sql,
            param_specs=[s.to_dict() for s in specs], params=params,
            max_rows=min(endpoint.max_rows, settings.max_rows_cap), mode=mode,
            timeout_seconds=settings.sync_timeout_seconds if mode == "sync" else settings.async_timeout_seconds,
            user_id=claims.user_id, api_key_id=claims.api_key_id,
            callback_url=check_callback(callback, settings.callback_allow_cidrs, settings.callback_allow_hosts)
            if callback is not None else None,
            heartbeat_seconds=settings.query_heartbeat_seconds,
            deadline=time.time() + settings.sync_timeout_seconds if mode == "sync" else None,
            callback_task_queue=settings.task_queue_callbacks,
            callback_schedule_seconds=list(settings.callback_schedule_seconds),
            callback_jitter=settings.callback_jitter,
            local_budget_seconds=settings.async_local_budget_seconds if mode == "async" else 0.0,
        )
        if mode == "async":
            store.create_job(conn, id=inp.job_id, company_id=inp.company_id, endpoint_id=inp.endpoint_id,
                             mode=mode, parameters=json.dumps(params), callback_url=inp.callback_url,
                             user_id=inp.user_id, api_key_id=inp.api_key_id)
        return inp


def _search_attributes(inp: QueryInput) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(temporal.SA_COMPANY, inp.company_slug), SearchAttributePair(temporal.SA_KIND, "query"),
        SearchAttributePair(temporal.SA_ENDPOINT, inp.endpoint), SearchAttributePair(temporal.SA_MODE, inp.mode),
    ])


@requires("data_api:execute")
async def execute(request: Request) -> Response:
    ctx = request.app.state.ctx
    namespace, slug = _path(request)
    body = await read_json_object(request, optional=True)
    unknown = set(body) - _BODY_FIELDS
    if unknown:
        raise ApiError(400, "INVALID_PARAMS", f"Unknown field '{sorted(unknown)[0]}' in the request body")
    inp = await run_in_threadpool(_prepare, ctx, request.state.claims, namespace, slug, body)
    client = await ctx.temporal()
    start = dict(id=inp.job_id, task_queue=ctx.settings.task_queue_queries,
                 search_attributes=_search_attributes(inp),
                 execution_timeout=timedelta(seconds=inp.timeout_seconds + 300))
    if inp.mode == "async":
        try:
            await client.start_workflow(QueryWorkflow.run, inp, request_eager_start=True, **start)
        except Exception:  # Temporal unreachable, say: the caller gets an error, so no row may stay "processing"
            await run_in_threadpool(_fail_unstarted, ctx, inp)
            raise
        polling_url = f"/api/v1/data-api/{namespace}/{slug}/jobs/{inp.job_id}"
        return _json({"job_id": inp.job_id, "status": "processing", "polling_url": polling_url}, 202)

    # Eager: when this process hosts a query worker, the first workflow task comes back in the start response
    # and the query runs here, as a local activity that hands its stored outcome straight to this request.
    # The query starts now, beside the workflow's start; the local activity takes it over.
    handoff = sync_results.expect(inp.job_id, inp)
    timeout_error = ApiError(408, "EXECUTION_TIMEOUT",
                             f"Query exceeded the {ctx.settings.sync_timeout_seconds:g}s timeout (use async mode)")
    try:
        handle = await client.start_workflow(QueryWorkflow.run, inp, request_eager_start=True, **start)
    except BaseException:  # not started (Temporal unreachable, say): nothing to wait for
        sync_results.discard(inp.job_id)
        raise
    if not getattr(handle, "__temporal_eagerly_started", False):
        sync_results.stop_started(inp.job_id)  # the workflow task may go to another worker: no query here
    try:
        # The activity interrupts the query at the deadline; the grace second lets that failure arrive.
        out, document = await _outcome(handle, handoff, inp.deadline + 1.0)
    except TimeoutError:
        with contextlib.suppress(RPCError):  # e.g. no worker picked it up: cancel so nothing runs later
            await handle.cancel()
        raise timeout_error from None
    except WorkflowFailureError as e:
        out, document = QueryOutput(status="failed", error=getattr(e.cause, "message", None),
                                    error_type=getattr(e.cause, "type", None)), None
        if out.error_type not in ("ExecutionTimeout", "ExecutionError", *_REFUSALS):
            log.error("sync job %s failed: %s", inp.job_id, e.cause)
    finally:
        sync_results.discard(inp.job_id)
    if out.status != "completed":
        if out.error_type == "ExecutionTimeout":
            raise timeout_error
        if out.error_type == "ExecutionError":
            raise ApiError(500, "EXECUTION_ERROR", out.error or "Query execution failed")
        if out.error_type in _REFUSALS:
            raise ApiError(422, _REFUSALS[out.error_type], out.error or "The query was refused")
        raise ApiError(500, "INTERNAL_ERROR", "Internal error during query execution")
    if document is None:
        document = await _read_result(ctx, out.result_key)
    tail = b',"max_rows":%d,"executed_at":%s}' % (inp.max_rows, orjson.dumps(out.executed_at))
    return Response(document[:-1] + tail, media_type="application/json")


def _fail_unstarted(ctx, inp: QueryInput) -> None:
    with ctx.engine.begin() as conn:
        store.finish_job(conn, inp.job_id, status="failed", error="Job could not be started")


async def _outcome(handle, handoff: asyncio.Future[Handoff], deadline: float) -> tuple[QueryOutput, bytes | None]:
    """The query's outcome (and result document) handed off in-process when the query ran here, else the
    workflow's result (the document is then read from the artifact store).

    An eagerly started execution gets a grace period before the result long-poll starts (one RPC saved per
    call); the long-poll still runs beside the handoff for anything slower, so a query that moved to another
    worker (a retry after a workflow task failure) is never waited for in vain."""
    waiting: set[asyncio.Future] = {handoff}
    if getattr(handle, "__temporal_eagerly_started", False):
        await asyncio.wait(waiting, timeout=min(_HANDOFF_GRACE, max(deadline - time.time(), 0)))
    result = None
    try:
        if not handoff.done():
            result = asyncio.ensure_future(handle.result())
            waiting.add(result)
            done, _ = await asyncio.wait(waiting, timeout=max(deadline - time.time(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError
        if handoff.done() and not handoff.cancelled():
            return handoff.result().outcome, handoff.result().document
        return result.result(), None
    finally:
        if result is not None and not result.done():
            result.cancel()


async def _read_result(ctx, key: str) -> bytes:
    try:
        return await run_in_threadpool(ctx.artifacts.get_bytes, key)
    except ArtifactNotFound:
        log.error("result artifact %s is missing", key)
        raise ApiError(500, "INTERNAL_ERROR", "The job's result is no longer available") from None


def _json(content, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


@requires("data_api:get_job")
async def get_job(request: Request) -> Response:
    ctx = request.app.state.ctx
    claims = request.state.claims
    namespace, slug = _path(request)
    job_id = request.path_params["job_id"]

    def load():
        with session_scope(ctx.engine) as session:
            return _job_of(session, claims, namespace, slug, job_id)

    job = await run_in_threadpool(load)
    if job.status == "processing":
        job = await _reconcile(ctx, job)
    result = await _read_result(ctx, job.result_key) if job.status == "completed" and job.result_key else None
    body = store.job_body(job, result)
    if job.callback_url:
        body["callback"] = await run_in_threadpool(_callback_state, ctx, job.id)
    return _json(body)


def _job_of(session, claims, namespace: str, slug: str, job_id: str):
    """The caller's job of this endpoint, or the contract's 404s (another company's job is just missing)."""
    endpoint = store.find_endpoint(session, claims.company_id, namespace, slug)
    if endpoint is None:
        raise endpoint_not_found()
    job = store.find_job(session, claims.company_id, endpoint.id, job_id) if JOB_ID_RE.match(job_id) else None
    if job is None:
        raise job_not_found()
    return job


def _callback_state(ctx, job_id: str) -> dict:
    with session_scope(ctx.engine) as session:
        return callbacks.describe_delivery(callbacks.latest_delivery(session, job_id))


@requires("data_api:execute")
async def redeliver_callback(request: Request) -> Response:
    """Starts a new delivery (a new webhook-id) of a finished job's result to its callback URL."""
    ctx, claims = request.app.state.ctx, request.state.claims
    namespace, slug = _path(request)

    def load():
        with session_scope(ctx.engine) as session:
            return _job_of(session, claims, namespace, slug, request.path_params["job_id"])

    job = await run_in_threadpool(load)
    if not job.callback_url:
        raise ApiError(409, "NO_CALLBACK_URL", "The job was submitted without a callback_url")
    if job.status == "processing":
        raise ApiError(409, "JOB_NOT_FINISHED", "The job has not finished yet; its callback will follow")
    settings = ctx.settings
    delivery_id = "msg_" + secrets.token_hex(12)
    client = await ctx.temporal()
    await client.start_workflow(
        CallbackWorkflow.run,
        CallbackInput(delivery_id, job.id, list(settings.callback_schedule_seconds), settings.callback_jitter),
        id=f"callback-{delivery_id}", task_queue=settings.task_queue_callbacks,
        search_attributes=TypedSearchAttributes([SearchAttributePair(temporal.SA_COMPANY, claims.company_slug),
                                                 SearchAttributePair(temporal.SA_KIND, "callback")]))
    return _json({"webhook_id": delivery_id, "status": "pending"}, 202)


async def _reconcile(ctx, job):
    return await reconcile(ctx, job, lambda session, job_id, reason: store.finish_job(
        session.connection(), job_id, status="failed", error=reason))


async def missing_path_params(request: Request) -> Response:
    """``.../data-api//slug/execute`` and the like: the contract's 400 INVALID_PARAMS; anything else 404."""
    parts = request.url.path.removeprefix(PREFIX + "/").split("/")
    shaped = (parts[-1:] == ["execute"] and len(parts) <= 3) or ("jobs" in parts and len(parts) <= 5)
    if shaped and (len(parts) < 3 or "" in parts[:-1]):
        raise ApiError(400, "INVALID_PARAMS", "Missing namespace or slug")
    raise ApiError(404, "NOT_FOUND", "No such route")


PREFIX = "/api/v1/data-api"
routes = [
    Route(PREFIX + "/{namespace}/{slug}/execute", execute, methods=["POST"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs/{job_id}", get_job, methods=["GET"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs/{job_id}/callback/redeliver", redeliver_callback, methods=["POST"]),
    Route(PREFIX + "/{rest:path}", missing_path_params, methods=["GET", "POST"], include_in_schema=False),
]

_COLUMNS = {"type": "array", "items": {"type": "object", "properties": {
    "name": {"type": "string"}, "type": {"type": "string"}}, "required": ["name", "type"]}}
_RESULT = {"type": "object", "required": ["columns", "rows", "row_count", "truncated"], "properties": {
    "columns": _COLUMNS, "rows": {"type": "array", "items": {"type": "object"}},
    "row_count": {"type": "integer"}, "truncated": {"type": "boolean"}}}
_SYNC = {**_RESULT, "required": [*_RESULT["required"], "max_rows", "executed_at"], "properties": {
    **_RESULT["properties"], "max_rows": {"type": "integer"}, "executed_at": {"type": "string"}}}
_ACCEPTED = {"type": "object", "required": ["job_id", "status", "polling_url"], "properties": {
    "job_id": {"type": "string"}, "status": {"type": "string"}, "polling_url": {"type": "string"}}}
_JOB = {"type": "object", "required": ["job_id", "status", "result", "error", "created_at", "completed_at"],
        "properties": {"job_id": {"type": "string"},
                       "status": {"type": "string", "enum": ["processing", "completed", "failed"]},
                       "result": {"oneOf": [_RESULT, {"type": "null"}]},
                       "error": {"type": ["string", "null"]}, "created_at": {"type": "string"},
                       "completed_at": {"type": ["string", "null"]}}}
_CALLBACK = {"type": "object", "properties": {
    "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
    "webhook_id": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
    "last_http_status": {"type": ["integer", "null"]}, "next_attempt_at": {"type": ["string", "null"]}}}
_JOB["properties"]["callback"] = _CALLBACK
_REDELIVERED = {"type": "object", "required": ["webhook_id", "status"],
                "properties": {"webhook_id": {"type": "string"}, "status": {"type": "string"}}}
_EXECUTE_BODY = {"type": "object", "properties": {
    "parameter_values": {"type": "object"}, "callback_url": {"type": "string", "format": "uri"}}}
_PATH = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in ("namespace", "slug")]
_exec_responses = responses(_SYNC, 400, 401, 403, 404, 408, 413, 415, 422, 500)
_exec_responses["202"] = {"description": "Accepted (async endpoint)",
                          "content": {"application/json": {"schema": _ACCEPTED}}}
OPENAPI = {
    PREFIX + "/{namespace}/{slug}/execute": {"post": {
        "summary": "Execute a visualization endpoint (sync: 200 with rows; async: 202 with a job)",
        "tags": ["data-api"], "security": [{"bearer": []}], "parameters": _PATH,
        "requestBody": json_body(_EXECUTE_BODY, required=False), "responses": _exec_responses}},
    PREFIX + "/{namespace}/{slug}/jobs/{job_id}": {"get": {
        "summary": "Status and result of an execution job", "tags": ["data-api"], "security": [{"bearer": []}],
        "parameters": [*_PATH, {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": responses(_JOB, 401, 403, 404, 500)}},
    PREFIX + "/{namespace}/{slug}/jobs/{job_id}/callback/redeliver": {"post": {
        "summary": "Deliver a finished job's result to its callback URL again (a new webhook-id)",
        "tags": ["data-api"], "security": [{"bearer": []}],
        "parameters": [*_PATH, {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": responses(_REDELIVERED, 401, 403, 404, 409, ok_status=202)}},
}
