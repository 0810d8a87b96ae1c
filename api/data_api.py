"""``/api/v1/data-api``: execute visualization endpoints (sync or async) and poll async jobs.

The handlers parse, authorise, call ``dataapi.data_api.service`` and map the result; a sync execution is
answered through the app's sync lane (``dataapi.sync``). Their OpenAPI is ``api.schemas.data_api``."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import cache as result_cache
from api import data_api_jobs
from api import limits as execute_limits
from api.auth import requires
from api.context import AppContext
from api.errors import ApiError, JSONResponse
from api.openapi import company_openapi
from api.reconcile import reconcile
from api.requests import read_json_object
from api.results import get_result, job_extras, json_answer, requested_format, sync_answer
from api.results import prepare as prepare_rows
from api.schemas.data_api import OPENAPI, PREFIX
from dataapi import retention
from dataapi.callbacks.deliveries import describe_delivery, latest_delivery
from dataapi.data_api import catalog, jobs, service
from dataapi.db import session_scope
from dataapi.messages import QueryInput
from dataapi.models import Job
from dataapi.search_attributes import search_attributes
from dataapi.statuses import DeliveryStatus, ExecutionMode, JobStatus
from dataapi.storage.base import ArtifactNotFound
from workflows.callback import CallbackWorkflow
from workflows.query import QueryWorkflow

__all__ = ["OPENAPI", "routes"]
log = logging.getLogger("dataapi.data_api")


def _path(request: Request) -> tuple[str, str]:
    return service.endpoint_path(request.path_params["namespace"], request.path_params["slug"])


@requires("data_api:execute")
@execute_limits.limited
async def execute(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    namespace, slug = _path(request)
    body = await read_json_object(request, optional=True)
    fmt = requested_format(request)  # 406 before any work

    def prepare(**options: Any) -> QueryInput:
        with ctx.engine.begin() as conn:
            return service.prepare_execution(conn, ctx.settings, request.state.claims, namespace, slug, body,
                                             **options)

    plan = await result_cache.plan(request, namespace, slug, body, prepare)  # Idempotency-Key, Prefer
    if plan.answer is not None:  # a repeated request of an async job: the first answer again
        return plan.answer
    assert plan.inp is not None
    inp = plan.inp
    prepare_rows(inp, fmt)
    cached = await result_cache.lookup(request, inp)  # after auth and share contexts, before any workflow
    if cached.response is not None:
        return cached.response
    client = await ctx.temporal()

    # A sync execution's workflow sets its search attributes as its query ends (QueryInput.attributes_on_close).
    attributes = None if inp.attributes_on_close else \
        search_attributes(inp.company_slug, "query", endpoint=inp.endpoint, mode=inp.mode)

    async def start() -> Any:
        return await client.start_workflow(
            QueryWorkflow.run, inp, id=inp.job_id, task_queue=ctx.settings.task_queue_queries,
            search_attributes=attributes, execution_timeout=timedelta(seconds=inp.timeout_seconds + 300),
            request_eager_start=True,
            **plan.start_options)

    if inp.mode == ExecutionMode.ASYNC:
        try:
            await start()
        except Exception:  # Temporal unreachable, say: the caller gets an error, so no row may stay "processing"
            await run_in_threadpool(_in_transaction, ctx, service.fail_unstarted, inp.job_id)
            raise
        polling_url = f"{PREFIX}/{namespace}/{slug}/jobs/{inp.job_id}"
        waited = await plan.continued(client, request, polling_url, fmt)  # Prefer: respond-async, wait=N
        if waited is not None:
            return waited
        return JSONResponse({"job_id": inp.job_id, "status": JobStatus.PROCESSING, "polling_url": polling_url}, 202)

    assert inp.deadline is not None
    # The activity interrupts the query at the deadline; the grace second lets that failure arrive.
    async with execute_limits.sync_slot(request, request.state.claims.company_id):  # fairness between companies
        answer = await plan.lane(ctx.sync_lane).execute(inp, plan.joining(start, client, inp.job_id),
                                                        inp.deadline + 1.0)
    service.check_outcome(answer.outcome, inp.job_id, ctx.settings.sync_timeout_seconds)
    document = answer.document
    if document is None:
        assert answer.outcome.result_key is not None
        document = await _read_result(ctx, answer.outcome.result_key)
    await cached.store(document, answer.outcome)
    tail = b',"max_rows":%d,"executed_at":%s}' % (inp.max_rows, orjson.dumps(answer.outcome.executed_at))
    return await sync_answer(request, fmt, document, answer.outcome, tail)


def _in_transaction(ctx: AppContext, fn: Any, *args: Any) -> Any:
    with ctx.engine.begin() as conn:
        return fn(conn, *args)


async def _read_result(ctx: AppContext, key: str) -> bytes:
    try:
        return await run_in_threadpool(ctx.artifacts.get_bytes, key)
    except ArtifactNotFound:
        log.error("result artifact %s is missing", key)
        raise ApiError(500, "INTERNAL_ERROR", "The job's result is no longer available") from None


async def _load_job(request: Request) -> Job:
    ctx: AppContext = request.app.state.ctx
    namespace, slug = _path(request)

    def load() -> Job:
        with session_scope(ctx.engine) as session:
            job = service.job_of(session, request.state.claims, namespace, slug, request.path_params["job_id"])
        retention.check_unexpired(job, ctx.settings.result_retention_seconds)  # 410 once it expired
        return job

    return await run_in_threadpool(load)


@requires("data_api:get_job")
async def get_job(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    job = await _load_job(request)
    if job.status == JobStatus.PROCESSING:
        job = await reconcile(ctx, job, lambda session, job_id, reason: jobs.finish_job(
            session.connection(), job_id, status=JobStatus.FAILED, error=reason))
    result = await _read_result(ctx, job.result_key) \
        if job.status == JobStatus.COMPLETED and job.result_key else None
    body = jobs.job_body(job, result, ctx.settings.result_retention_seconds)
    body |= job_extras(job, request.url.path)
    if job.callback_url:
        body["callback"] = await run_in_threadpool(_callback_state, ctx, job.id)
    return json_answer(request, body)


def _callback_state(ctx: AppContext, job_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        return describe_delivery(latest_delivery(session, job_id))


@requires("data_api:execute")
async def redeliver_callback(request: Request) -> Response:
    """Starts a new delivery (a new webhook-id) of a finished job's result to its callback URL."""
    ctx: AppContext = request.app.state.ctx
    delivery = service.redelivery(await _load_job(request), ctx.settings)
    client = await ctx.temporal()
    await client.start_workflow(
        CallbackWorkflow.run, delivery, id=f"callback-{delivery.delivery_id}",
        task_queue=ctx.settings.task_queue_callbacks,
        search_attributes=search_attributes(request.state.claims.company_slug, "callback"))
    return JSONResponse({"webhook_id": delivery.delivery_id, "status": DeliveryStatus.PENDING}, 202)


@requires("data_api:execute")
async def list_catalog(request: Request) -> Response:
    """The catalog: the company's active endpoints and their parameters, as the caller may execute them."""
    ctx: AppContext = request.app.state.ctx

    def read() -> list[dict[str, Any]]:
        with session_scope(ctx.engine) as session:
            return catalog.list_catalog(session, request.state.claims)

    return JSONResponse(await run_in_threadpool(read))


@requires("data_api:execute")
async def get_catalog_entry(request: Request) -> Response:
    """One endpoint's catalog entry, with its result's columns."""
    ctx: AppContext = request.app.state.ctx
    namespace, slug = _path(request)

    def read() -> dict[str, Any] | None:
        with session_scope(ctx.engine) as session:
            return catalog.catalog_entry(session, request.state.claims, namespace, slug)

    entry = await run_in_threadpool(read)
    if entry is None:
        raise service.EndpointNotFound()
    return JSONResponse(entry)


async def missing_path_params(request: Request) -> Response:
    """``.../data-api//slug/execute`` and the like: the contract's 400 INVALID_PARAMS; anything else 404."""
    parts = request.url.path.removeprefix(PREFIX + "/").split("/")
    shaped = (parts[-1:] == ["execute"] and len(parts) <= 3) or ("jobs" in parts and len(parts) <= 5)
    if shaped and (len(parts) < 3 or "" in parts[:-1]):
        raise ApiError(400, "INVALID_PARAMS", "Missing namespace or slug")
    raise ApiError(404, "NOT_FOUND", "No such route")


routes = [
    Route(PREFIX + "/endpoints", list_catalog, methods=["GET"]),
    Route(PREFIX + "/openapi.json", company_openapi, methods=["GET"]),
    Route(PREFIX + "/{namespace}/{slug}", get_catalog_entry, methods=["GET"]),
    Route(PREFIX + "/{namespace}/{slug}/execute", execute, methods=["POST"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs", data_api_jobs.list_jobs, methods=["GET"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs/{job_id}", get_job, methods=["GET"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs/{job_id}", data_api_jobs.delete_job, methods=["DELETE"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs/{job_id}/result", get_result, methods=["GET"]),
    Route(PREFIX + "/{namespace}/{slug}/jobs/{job_id}/callback/redeliver", redeliver_callback, methods=["POST"]),
    Route(PREFIX + "/{rest:path}", missing_path_params, methods=["GET", "POST"], include_in_schema=False),
]
