"""The Starlette application: routes, error handlers and the lifespan that owns shared resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.types import ASGIApp
from temporalio.client import Client
from temporalio.worker import Worker

from api import admin, auth_endpoints, codec, console, data_api, errors, health, jobs_api, metrics, openapi, root
from api.context import AppContext
from api.cors import with_cors
from api.methods import DocumentedMethods
from api.mounts import ApiMount
from api.request_id import RequestIdMiddleware
from dataapi import heap
from dataapi.messages import QueryInput
from dataapi.settings import Settings, get_settings
from dataapi.sync import Prefetched, SyncLane

log = logging.getLogger("dataapi.api")

# Builds the API's own query worker on the API's client (``worker.embedded_query_worker``, which ``dataapi api``
# passes): the worker, and the function that starts a sync query beside its workflow's start, which the sync lane
# uses while the worker runs. Passed in, not imported, so that api/ never loads the worker's code (DuckDB).
QueryWorkerBuilder = Callable[[Client, Settings, SyncLane], tuple[Worker, Callable[[QueryInput], Prefetched]]]

# Route modules, each with `routes` and an `OPENAPI` fragment for the document (from api/schemas/).
ROUTE_MODULES = [health, metrics, auth_endpoints, data_api, jobs_api, admin, codec]


def _routes() -> list:
    """One mount per API, each rendering its errors in its dialect; the operator's routes (health, metrics, the
    codec endpoint, the document) and unknown paths answer in the Data API's."""
    return [
        *health.routes, *metrics.routes,
        ApiMount("/api/v1/auth", auth_endpoints.routes, errors.DATA_API, name="auth-api"),
        ApiMount(data_api.PREFIX, data_api.routes, errors.DATA_API, name="data-api"),
        ApiMount(jobs_api.PREFIX, jobs_api.routes, errors.JOBS_API, name="jobs-api"),
        ApiMount(admin.PREFIX, admin.routes, errors.DATA_API, name="admin-api"),
        console.mount(),  # the web console: HTML pages, its own error pages
        *codec.routes, *openapi.routes, *root.routes,
    ]


class App(Starlette):
    """Starlette with the request id and CORS outside everything else, the handler of unexpected errors
    included (Starlette puts it outermost), so that every answer carries them, a 500 too."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return RequestIdMiddleware(with_cors(inner, self.state.ctx.settings.cors_origins))


async def _query_worker(ctx: AppContext, build: QueryWorkerBuilder, settle_heap: bool) -> None:
    """Runs the API's own query worker on the API's client (eager start needs both in one process), once
    Temporal answers; until then, and if it ever stops, sync executions go through the worker processes."""
    while True:
        try:
            client = await ctx.connected_temporal()
        except Exception as e:  # Temporal not up yet: the API serves meanwhile, readyz says so
            log.debug("embedded query worker waits for Temporal: %s", e)
            await asyncio.sleep(2)
            continue
        try:
            log.info("embedded query worker polls %s", ctx.settings.task_queue_queries)
            query_worker, start_query = build(client, ctx.settings, ctx.sync_lane)
            if settle_heap:
                heap.settle()  # the worker's modules and DuckDB are loaded now
            with ctx.sync_lane.serving(start_query):  # the fast lane is open while the worker runs
                await query_worker.run()  # a cancel stops it
        except Exception:
            log.exception("embedded query worker stopped; restarting it in 5 s")
            await asyncio.sleep(5)


def create_app(settings: Settings | None = None, engine: Engine | None = None,
               client: Client | None = None, settle_heap: bool = False,
               query_worker: QueryWorkerBuilder | None = None) -> Starlette:
    """``query_worker``: how to build the API's own query worker, run by the lifespan when
    ``settings.api_query_worker`` is on (without it, every sync query runs on the worker processes).
    ``settle_heap``: the process serves this app alone (``dataapi api``), so what its startup made can be set
    aside from full garbage collections once it has started (``dataapi.heap``); not for tests, whose process
    makes many apps."""
    settings = settings or get_settings()
    ctx = AppContext.build(settings, engine, client)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        embedded = (asyncio.create_task(_query_worker(ctx, query_worker, settle_heap))
                    if settings.api_query_worker and query_worker is not None else None)
        if embedded is None and settle_heap:
            heap.settle()
        yield
        if embedded is not None:
            embedded.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await embedded
        await ctx.limits.close()  # the last rate-limit counts reach the store
        if engine is None:
            ctx.engine.dispose()

    app = App(routes=_routes(), exception_handlers=errors.DATA_API, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.openapi = openapi.build_document([m.OPENAPI for m in ROUTE_MODULES])
    app.add_middleware(DocumentedMethods, document=app.state.openapi)  # 405 and OPTIONS: the document's Allow
    app.state.metrics = metrics.Metrics(ctx.engine, ctx.sync_lane)
    # Outside DocumentedMethods, so that its 405 answers are counted under their route too.
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    return app
