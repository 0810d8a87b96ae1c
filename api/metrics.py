"""Prometheus metrics of the API: request latency by route, and jobs by state (read from the store at scrape).

``/metrics`` is open unless ``DATAAPI_METRICS_TOKEN`` is set, then it needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

import hmac
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.errors import ApiError
from dataapi.models import Job, RepoJob


class JobsByState:
    """Jobs of both APIs by kind and status, counted in the metadata store when scraped."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        family = GaugeMetricFamily("dataapi_jobs", "Jobs by kind and status", labels=["kind", "status"])
        with Session(self.engine) as session:
            for kind, model in (("query", Job), ("repository", RepoJob)):
                for status, count in session.exec(select(model.status, func.count()).group_by(model.status)):
                    family.add_metric([kind, status], count)
        yield family


class Metrics:
    def __init__(self, engine):
        self.registry = CollectorRegistry()
        self.latency = Histogram("dataapi_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.registry.register(JobsByState(engine))


class MetricsMiddleware:
    """Times every request by its route template (never the raw path: ids would explode the label set), the
    route the router chose (``scope["route"]``: no second pass of every route's pattern per request)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], route, str(status[0])).observe(
                time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    ctx = request.app.state.ctx
    token = ctx.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "UNAUTHORIZED", "Metrics need the metrics token")
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
OPENAPI = {"/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"], "responses": {
    "200": {"description": "Metrics in the Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}}},
    "401": {"description": "Missing or wrong metrics token",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}}}
