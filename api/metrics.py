"""Prometheus metrics of the API: request latency by route, jobs by state (read from the store at scrape), the
result cache's hits, misses, evictions and bytes, and what the sync lane did.

``/metrics`` is closed by default: with a token (``DATAAPI_METRICS_TOKEN``, or var/metrics-token made by the embedded
stack) it needs ``Authorization: Bearer <token>`` (what Prometheus sends with ``authorization.credentials``), else
401; with no token it answers 403 unless ``DATAAPI_METRICS_PUBLIC=true`` opens it. Route names, job counts by state
and latencies say how the platform is used, by whom and how busy it is: not for anyone who can reach the port."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import context
from api.schemas.operations import METRICS as OPENAPI
from dataapi.data_api.cache import CacheStats
from dataapi.errors import Forbidden, Unauthorized
from dataapi.job_counts import jobs_by_state
from dataapi.secrets import metrics_token
from dataapi.sync import SyncLane

__all__ = ["OPENAPI", "Metrics", "MetricsMiddleware", "routes"]


class JobsByState:
    """Jobs of both APIs by kind and status, counted in the metadata store when scraped."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("dataapi_jobs", "Jobs by kind and status", labels=["kind", "status"])
        with Session(self.engine) as session:
            for kind, status, count in jobs_by_state(session):
                family.add_metric([kind, status], count)
        yield family


class ResultCacheMetrics:
    """The result cache's counters and size in this process (``dataapi.data_api.cache.CacheStats``), once the
    first cacheable execution made the cache (``api.cache.result_cache``)."""

    COUNTERS = (("hits", "answers from the cache"), ("shared_hits", "hits found through the shared tier"),
                ("misses", "cacheable executions that ran"), ("coalesced", "misses that waited for an identical one"),
                ("evictions", "entries dropped to stay within the cache's bytes"),
                ("too_large", "results over the size threshold, not cached"))

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.metrics.result_cache or CacheStats()
        for name, doc in self.COUNTERS:
            yield CounterMetricFamily(f"dataapi_result_cache_{name}", f"Result cache: {doc}",
                                      value=getattr(stats, name))
        yield GaugeMetricFamily("dataapi_result_cache_bytes", "Result cache: bytes held in memory", value=stats.bytes)
        yield GaugeMetricFamily("dataapi_result_cache_entries", "Result cache: entries held in memory",
                                value=stats.entries)
        yield GaugeMetricFamily("dataapi_result_cache_max_bytes", "Result cache: the bound of its bytes in memory",
                                value=stats.max_bytes)


class SyncLaneMetrics:
    """What the sync fast lane of this process did (``dataapi.sync.LaneStats``): calls answered by the handoff or
    through Temporal, and the prefetched queries adopted or stopped. Many ``fell_back`` or ``stopped`` mean the
    queries run elsewhere (a thin API) or the adoption window is too short for this machine's load."""

    COUNTERS = (("handed_off", "sync calls answered by the in-process handoff"),
                ("fell_back", "sync calls answered by the workflow's result"),
                ("prefetched", "queries started beside their workflow's start"),
                ("adopted", "query activities that took over a waiting call's query"),
                ("stopped", "prefetched queries nobody took over"))

    def __init__(self, lane: SyncLane):
        self.lane = lane

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, doc in self.COUNTERS:
            yield CounterMetricFamily(f"dataapi_sync_lane_{name}", f"Sync lane: {doc}",
                                      value=getattr(self.lane.stats, name))


class Metrics:
    def __init__(self, engine: Engine, lane: SyncLane | None = None):
        self.registry = CollectorRegistry()
        self.latency = Histogram("dataapi_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.registry.register(JobsByState(engine))
        self.result_cache: CacheStats | None = None  # set by api.cache when the app's cache is made
        self.registry.register(ResultCacheMetrics(self))
        if lane is not None:
            self.registry.register(SyncLaneMetrics(lane))


class MetricsMiddleware:
    """Times every request by its route template (never the raw path: ids would explode the label set), the
    route the router chose (``scope["route"]``: no second pass of every route's pattern per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], route, str(status[0])).observe(
                time.perf_counter() - started)


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def metrics_endpoint(request: Request) -> Response:
    settings = context(request).settings
    token = await run_in_threadpool(metrics_token, settings)  # may read var/metrics-token
    if token:  # a token, when there is one, is required even if DATAAPI_METRICS_PUBLIC is also set
        if not hmac.compare_digest(_bearer(request).encode(), token.encode()):
            raise Unauthorized("Metrics need the metrics token: Authorization: Bearer <token>",
                               headers={"WWW-Authenticate": "Bearer"})
    elif not settings.metrics_public:
        raise Forbidden("Metrics are closed: set DATAAPI_METRICS_TOKEN (sent by the scraper as a bearer token) or "
                        "DATAAPI_METRICS_PUBLIC=true")
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
