"""The result cache on the execute route (``dataapi.data_api.cache``): ``lookup`` runs after authentication, the
permission check and the share context's resolution (``service.prepare_execution``) and before any workflow
starts; ``Cached.store`` keeps a fresh execution's result.

A hit answers what the fresh call answered, byte for byte (through ``api.results.sync_answer``: the same
encoding), plus ``"cached": true``: the original ``executed_at``, ``Age`` (whole seconds since that result was
stored), ``X-Cache: HIT`` and ``X-Cache-Job-Id`` naming the job (Temporal workflow) that computed it. A hit
calls no Temporal and reads no artifact when the memory tier has it.

The caller's ``Cache-Control`` is honoured: ``no-cache`` executes afresh and stores the new result, ``no-store``
executes afresh and stores nothing, ``max-age=N`` accepts only a result at most N seconds old. A request for
another format than JSON (``Accept``, ``?format=``) is never answered from the cache.

``plan`` is ``api.idempotency.plan`` with one shortcut: a plain call (no ``Idempotency-Key``, no ``Prefer``) of an
endpoint this process last saw as a sync one, cached or not, on a SQLite store with an idle pooled connection,
prepares on the event loop instead of a worker thread. That preparation only reads (two indexed selects; WAL
readers never wait for the writer), which costs less than the thread hop. Whatever the hint says, the
preparation reads the endpoint afresh, so a changed endpoint is seen at once; one that became async (whose
preparation writes its job row) is prepared again on a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api import idempotency
from api.results import sync_answer
from dataapi.data_api.cache import Entry, ResultCache, SharedTier, cache_key
from dataapi.data_api.results import Format
from dataapi.data_api.service import WouldWrite
from dataapi.messages import QueryInput, QueryOutput
from dataapi.statuses import QueryStatus

log = logging.getLogger("dataapi.cache")
HINTS = 4096  # endpoints remembered as sync ones (``plan``)


def result_cache(app: Any) -> ResultCache:
    """The app's cache, made on first use from its settings."""
    cache: ResultCache | None = getattr(app.state, "result_cache", None)
    if cache is None:
        ctx = app.state.ctx
        s = ctx.settings
        cache = ResultCache(max_bytes=s.result_cache_bytes, max_entry_bytes=s.result_cache_max_entry_bytes,
                            data_dir=s.resolved_data_dir, shared=SharedTier(ctx.engine, ctx.artifacts))
        app.state.result_cache = cache
        metrics = getattr(app.state, "metrics", None)
        if metrics is not None:
            metrics.result_cache = cache.stats
    return cache


async def plan(request: Request, namespace: str, slug: str, body: dict[str, Any],
               prepare: idempotency.Prepare) -> idempotency.Plan:
    """The execution's plan (``api.idempotency.plan``), prepared on the loop when that is cheaper and safe."""
    key = (request.state.claims.company_id, namespace, slug)
    hints: dict[tuple[int, str, str], bool] = _hints(request.app)
    made = None
    if hints.get(key) and _plain(request) and _idle_sqlite(request.app):
        with contextlib.suppress(WouldWrite):  # it became async: its job row is written on a worker thread
            made = idempotency.Plan(inp=prepare(read_only=True))
    if made is None:
        made = await idempotency.plan(request, namespace, slug, body, prepare)
    if made.inp is not None and not made.keyed and made.wait is None:
        if len(hints) >= HINTS:
            hints.clear()
        hints[key] = made.inp.deadline is not None  # a sync endpoint: its plain preparation only reads
    return made


def _hints(app: Any) -> dict[tuple[int, str, str], bool]:
    hints: dict[tuple[int, str, str], bool] | None = getattr(app.state, "result_cache_hints", None)
    if hints is None:
        hints = app.state.result_cache_hints = {}
    return hints


def _plain(request: Request) -> bool:
    """No Idempotency-Key and no Prefer: ``idempotency.plan`` would only prepare."""
    headers = request.headers
    return "idempotency-key" not in headers and "prefer" not in headers


def _idle_sqlite(app: Any) -> bool:
    """The store is SQLite and its pool has a connection checked in (taking it does not wait)."""
    engine = app.state.ctx.engine
    if engine.dialect.name != "sqlite":
        return False
    checkedin = getattr(engine.pool, "checkedin", None)
    return checkedin is not None and checkedin() > 0


@dataclass
class Cached:
    """What ``lookup`` found: a ``response`` (a hit), or what the execution must do to fill the cache."""

    response: Response | None = None
    cache: ResultCache | None = None
    inp: QueryInput | None = None
    key: str = ""
    keep: bool = False  # store the fresh result (not under Cache-Control: no-store)
    flight: asyncio.Future[None] | None = field(default=None, repr=False)  # the single flight this call leads

    async def store(self, document: bytes, outcome: QueryOutput) -> None:
        """After a fresh execution: keeps its result (memory tier, then the shared tier's index row) and ends the
        flight this call led. A failure to index is logged; the caller's answer does not depend on it."""
        cache, inp = self.cache, self.inp
        if cache is None or inp is None:
            return
        try:
            if not (self.keep and outcome.result_key and outcome.executed_at):
                return
            entry = Entry(document, inp.job_id, outcome.executed_at, time.time(), outcome.result_key)
            if not cache.keep(self.key, entry):
                return
        finally:
            self._land()
        if cache.shared is not None:
            try:
                await run_in_threadpool(cache.shared.save, self.key, inp.company_id, inp.endpoint_id, entry,
                                        inp.cache_seconds)
            except Exception:
                log.exception("result cache: could not index job %s", inp.job_id)

    def _land(self) -> None:
        if self.cache is not None and self.flight is not None:
            self.cache.flights.land(self.key, self.flight)
            self.flight = None


NOT_CACHED = Cached()


def _directives(request: Request) -> tuple[set[str], float | None]:
    """The request's Cache-Control directives and its max-age (None when absent or malformed)."""
    value = request.headers.get("cache-control")
    if not value:
        return set(), None
    names, max_age = set(), None
    for part in value.lower().split(","):
        name, _, arg = part.strip().partition("=")
        names.add(name)
        if name == "max-age":
            with contextlib.suppress(ValueError):
                max_age = max(float(int(arg.strip().strip('"'))), 0.0)
    return names, max_age


async def hit(request: Request, inp: QueryInput, entry: Entry) -> Response:
    """The answer of a fresh call with this result, plus ``"cached": true`` and the cache's headers."""
    tail = b',"max_rows":%d,"executed_at":%s,"cached":true}' % (inp.max_rows, orjson.dumps(entry.executed_at))
    outcome = QueryOutput(status=QueryStatus.COMPLETED, result_key=entry.result_key, executed_at=entry.executed_at)
    answer = await sync_answer(request, Format.JSON, entry.document, outcome, tail)
    answer.headers.update({"Age": str(int(entry.age(time.time()))), "X-Cache": "HIT",
                           "X-Cache-Job-Id": entry.job_id})
    return answer


async def lookup(request: Request, inp: QueryInput) -> Cached:
    """The cache's answer to a prepared sync execution, or how to fill it: ``NOT_CACHED`` for an endpoint without
    ``cache_seconds``, an async one, another format or a company with no data version here."""
    if inp.cache_seconds <= 0 or inp.deadline is None or inp.store_rows:  # store_rows: a format other than JSON
        return NOT_CACHED
    cache = result_cache(request.app)
    version = cache.versions.of(inp.company_slug)
    if version is None:
        return NOT_CACHED
    key = cache_key(inp.company_id, inp.endpoint_id, inp.sql, inp.param_specs, inp.max_rows, version, inp.params)
    names, asked_age = _directives(request)
    if "no-cache" in names or "no-store" in names:
        cache.stats.misses += 1
        return Cached(None, cache, inp, key, keep="no-store" not in names)
    max_age = float(inp.cache_seconds) if asked_age is None else min(float(inp.cache_seconds), asked_age)
    entry = cache.local(key, max_age, time.time())
    if entry is not None:
        cache.stats.hits += 1
        return Cached(await hit(request, inp, entry))
    flight, leads = cache.flights.join(key)
    if not leads:  # an identical call executes now: wait for it, then take its result
        cache.stats.coalesced += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(flight), timeout=max(inp.deadline - time.time(), 0.0))
        entry = cache.local(key, max_age, time.time())
        if entry is not None:
            cache.stats.hits += 1
            return Cached(await hit(request, inp, entry))
        cache.stats.misses += 1
        return Cached(None, cache, inp, key, keep=True)
    cached = Cached(None, cache, inp, key, keep=True, flight=flight)
    task = asyncio.current_task()
    if task is not None:  # the flight ends with this call whatever happens to it (an error, a disconnect)
        task.add_done_callback(lambda _: cached._land())
    try:
        entry = await run_in_threadpool(cache.from_shared, key, inp.company_id, max_age, time.time())
    except Exception:
        log.exception("result cache: the shared tier could not be read")
        entry = None
    if entry is not None:
        cache.keep(key, entry)
        cached._land()
        cache.stats.hits += 1
        cache.stats.shared_hits += 1
        return Cached(await hit(request, inp, entry))
    cache.stats.misses += 1
    return cached
