"""The Starlette application: routes, error handlers and the lifespan that owns shared resources."""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import Engine
from starlette.applications import Starlette
from temporalio.client import Client

from api import admin, auth_endpoints, data_api, health, jobs_api, metrics, openapi
from api.context import AppContext
from api.errors import EXCEPTION_HANDLERS
from dataapi.settings import Settings, get_settings

log = logging.getLogger("dataapi.api")

# Route modules, each with `routes` and an `OPENAPI` fragment for the document.
ROUTE_MODULES = [health, metrics, auth_endpoints, data_api, jobs_api, admin]


def create_app(settings: Settings | None = None, engine: Engine | None = None,
               client: Client | None = None) -> Starlette:
    settings = settings or get_settings()
    ctx = AppContext.build(settings, engine, client)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        yield
        if engine is None:
            ctx.engine.dispose()

    routes = [r for m in ROUTE_MODULES for r in m.routes] + openapi.routes
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.metrics = metrics.Metrics(ctx.engine)
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics, routes=routes)
    app.state.ctx = ctx
    app.state.openapi = openapi.build_document(ROUTE_MODULES)
    return app
