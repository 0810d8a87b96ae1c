"""Rate limits and fairness of executions (both APIs' execute): requests per minute per API key and per company,
and sync executions in flight per company.

**Requests per minute** are counted in fixed one-minute windows (wall clock, ``unix time // 60``), per API key
(``key:<id>``; a user without a key: ``user:<id>``) and per company (``company:<id>``). A refused request is not
counted. The hot path never waits for the metadata store: ``RequestCounters.admit`` decides from memory, with
the process's own count since its last sync plus the store's total as last read. A background task
(``ExecuteLimits``, started by a request) adds the process's counts to the shared rows of ``rate_counters`` and
reads every tracked row back, at most once per ``rate_limit_sync_seconds``, while requests come and for
``KEEP_SYNCING_SECONDS`` after the last one.

What that bounds: a process sees the others' requests up to one sync late, so a window may admit beyond its
limit up to (processes - 1) x (requests one process admits in one sync interval plus a store round trip); a
process idle for longer than ``KEEP_SYNCING_SECONDS`` decides the requests before its first sync with what it
knew before. A fixed window also lets a caller spend one window's budget at its end and the next one's at its
start. When the store cannot be reached, each process limits with what it last read plus its own counts, and
keeps them to add once the store answers (within the same window).

**Per-company overrides** (``company_limits``, set with ``dataapi companies limits``) replace the settings'
defaults for one company; they are read with each sync, so a process applies a new override within a sync
interval (and the defaults until a company's first sync in that process).

**Fairness** (``CompanySlots``): sync executions in flight per company, in one API process, are at most the
company's bound (``sync_concurrency_per_company``; default twice ``query_workers``, half of the query worker's
local activity slots, so that another company's call always finds one). A call over it waits up to
``sync_queue_seconds`` for a turn, then is refused with 429, while other companies' calls run. It bounds what
one API process starts; several API processes each allow the bound. The DuckDB slots themselves are shared
fairly by ``dataapi.fair_slots``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from dataapi.errors import Invalid, RateLimited
from dataapi.models import Company, CompanyLimits, RateCounter, pk, utcnow
from dataapi.settings import Settings

log = logging.getLogger("dataapi.limits")

WINDOW_SECONDS = 60
# After its last request a process keeps syncing this long, so that its next requests are decided with the
# other processes' counts of a moment ago rather than of its last busy spell.
KEEP_SYNCING_SECONDS = 5.0
_CHUNK = 500  # scopes per IN (...) read


@dataclass(frozen=True)
class Limits:
    """The limits of one company: requests per minute of the company and of each of its keys (0: none), and
    its sync executions in flight per API process (at least 1)."""

    company_per_minute: int
    key_per_minute: int
    sync_concurrency: int


@dataclass(frozen=True)
class Override:
    """A company's own values; None keeps the setting's default."""

    company_per_minute: int | None = None
    key_per_minute: int | None = None
    sync_concurrency: int | None = None

    def over(self, defaults: Limits) -> Limits:
        return Limits(_pick(self.company_per_minute, defaults.company_per_minute),
                      _pick(self.key_per_minute, defaults.key_per_minute),
                      _pick(self.sync_concurrency, defaults.sync_concurrency))


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def default_limits(settings: Settings) -> Limits:
    return Limits(settings.rate_limit_per_company, settings.rate_limit_per_key,
                  settings.sync_concurrency_per_company or 2 * settings.query_workers)


@dataclass(frozen=True)
class Quota:
    """Where a caller stands in the limit closest to exhaustion, as the IETF draft's ``RateLimit-*`` headers say
    it: the limit, what remains of it, and the seconds until the window resets. ``policy``: every limit that
    applied (``RateLimit-Policy``)."""

    limit: int
    remaining: int
    reset: int
    policy: str

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset), "RateLimit-Policy": self.policy}


# --- counting in memory (the hot path) ---------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _policy(limits: tuple[tuple[int, str], ...]) -> str:
    """``RateLimit-Policy``: every limit that applies, with its window and whose it is."""
    return ", ".join(f'{limit};w={WINDOW_SECONDS};comment="{name}"' for limit, name in limits)


@dataclass
class _Count:
    window: int
    shared: int = 0  # the store's total at the last sync (this process's synced requests included)
    syncing: int = 0  # this process's requests being added to the store now
    pending: int = 0  # this process's requests not yet sent to the store

    @property
    def used(self) -> int:
        return self.shared + self.syncing + self.pending


class RequestCounters:
    """The per-window request counts of one process, and what it last learnt of the other processes'. Used from
    one event loop: no locks."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._counts: dict[str, _Count] = {}

    def window(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        return int(now // WINDOW_SECONDS) * WINDOW_SECONDS

    def _count(self, scope: str, window: int) -> _Count:
        c = self._counts.get(scope)
        if c is None or c.window != window:
            c = self._counts[scope] = _Count(window)
        return c

    def admit(self, budgets: Iterable[tuple[str, int, str]]) -> Quota | None:
        """Counts one request against every ``(scope, limit, name)`` with a limit (> 0) and answers the quota of
        the tightest, or raises ``RateLimited`` (counting nothing) when any is used up. None: no limit applies."""
        now = self._clock()
        window = self.window(now)
        reset = max(1, math.ceil(window + WINDOW_SECONDS - now))
        applied = [(self._count(scope, window), limit, name) for scope, limit, name in budgets if limit > 0]
        if not applied:
            return None
        policy = _policy(tuple((limit, name) for _, limit, name in applied))
        for c, limit, name in applied:
            if c.used >= limit:
                quota = Quota(limit, 0, reset, policy)
                refusal = RateLimited(reset, f"Too many requests: the {name}'s limit is {limit} per minute; "
                                             f"retry in {reset} s")
                refusal.headers = {**quota.headers(), **(refusal.headers or {})}
                raise refusal
        for c, _, _ in applied:
            c.pending += 1
        c, limit, _ = min(applied, key=lambda a: (a[1] - a[0].used, a[1]))
        return Quota(limit, max(0, limit - c.used), reset, policy)

    # --- what a sync takes and gives back ---------------------------------------------------------------

    def take_pending(self) -> tuple[int, dict[str, int], list[str]]:
        """The current window, the counts to add to the store (moved to ``syncing``), and every scope of this
        window to read back. Counts of past windows are dropped: they no longer decide anything."""
        window = self.window()
        self._counts = {s: c for s, c in self._counts.items() if c.window == window}
        increments = {}
        for scope, c in self._counts.items():
            if c.pending:
                c.syncing, c.pending = c.syncing + c.pending, 0
                increments[scope] = c.syncing
        return window, increments, list(self._counts)

    def synced(self, window: int, totals: dict[str, int]) -> None:
        """The store's totals after the increments were added: they now include this process's."""
        for scope, c in self._counts.items():
            if c.window == window:
                c.syncing = 0
                c.shared = max(c.shared, totals.get(scope, 0))

    def sync_failed(self, window: int) -> None:
        """The increments did not reach the store: they are sent again with the next sync."""
        for c in self._counts.values():
            if c.window == window:
                c.syncing, c.pending = 0, c.pending + c.syncing

    @property
    def pending(self) -> bool:
        window = self.window()
        return any(c.pending and c.window == window for c in self._counts.values())


# --- fairness: sync executions in flight per company ----------------------------------------------------------

class CompanySlots:
    """At most ``bound`` sync executions of one company in flight in this process; a call over it waits its turn
    (first come, first served) for up to ``wait_seconds``, then is refused."""

    def __init__(self, wait_seconds: float):
        self.wait_seconds = wait_seconds
        self._running: dict[int, int] = {}
        self._waiting: dict[int, deque[asyncio.Future[None]]] = {}
        self._bounds: dict[int, int] = {}  # the bound the company's latest call came with

    def running(self, company_id: int) -> int:
        return self._running.get(company_id, 0)

    def waiting(self, company_id: int) -> int:
        return len(self._waiting.get(company_id, ()))

    @contextlib.asynccontextmanager
    async def slot(self, company_id: int, bound: int) -> AsyncIterator[None]:
        await self._acquire(company_id, bound)
        try:
            yield
        finally:
            self._release(company_id)

    async def _acquire(self, company_id: int, bound: int) -> None:
        self._bounds[company_id] = bound
        if self._running.get(company_id, 0) < bound and not self._waiting.get(company_id):
            self._running[company_id] = self._running.get(company_id, 0) + 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(company_id, deque()).append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.wait_seconds)
        except BaseException as e:  # timed out, or the caller went away
            if turn.done() and not turn.cancelled():
                self._release(company_id)  # the turn came as the wait ended: handed on
            else:
                turn.cancel()
                self._forget(company_id, turn)
            if isinstance(e, TimeoutError):
                raise RateLimited(1, f"Too many sync executions of this company in flight (at most {bound}); "
                                     "retry shortly") from None
            raise

    def _release(self, company_id: int) -> None:
        """A finished call frees its slot; waiters take the free slots, first come first served."""
        running = self._running.get(company_id, 0) - 1
        bound = self._bounds.get(company_id, 1)
        waiting = self._waiting.get(company_id)
        while waiting and running < bound:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                running += 1
        if not waiting:
            self._waiting.pop(company_id, None)
        if running > 0:
            self._running[company_id] = running
        else:
            self._running.pop(company_id, None)
            if company_id not in self._waiting:
                self._bounds.pop(company_id, None)

    def _forget(self, company_id: int, turn: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(company_id)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(turn)
            if not waiting:
                del self._waiting[company_id]


# --- the shared counters and the overrides in the store ------------------------------------------------------

def sync_counts(engine: Engine, window: int, increments: dict[str, int], scopes: list[str],
                company_ids: list[int], purge: bool = False) -> tuple[dict[str, int], dict[int, Override]]:
    """Adds this process's counts of ``window`` to the shared rows and reads back the totals of ``scopes`` and
    the overrides of ``company_ids``, in one transaction. ``purge``: also deletes the rows of windows before the
    previous one."""
    table = RateCounter.__table__  # type: ignore[attr-defined]
    minute = window // WINDOW_SECONDS
    with engine.begin() as conn:
        if increments:
            insert: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
            stmt = insert.on_conflict_do_update(index_elements=["scope", "minute"],
                                                set_={"count": table.c.count + insert.excluded.count})
            # one order for every process: concurrent syncs never wait on each other in a cycle
            conn.execute(stmt, [{"scope": s, "minute": minute, "count": n} for s, n in sorted(increments.items())])
        totals: dict[str, int] = {}
        for i in range(0, len(scopes), _CHUNK):
            rows = conn.execute(select(table.c.scope, table.c.count).where(
                table.c.minute == minute, table.c.scope.in_(scopes[i:i + _CHUNK])))
            totals.update({scope: count for scope, count in rows})
        limits = CompanyLimits.__table__  # type: ignore[attr-defined]
        overrides = {}
        for i in range(0, len(company_ids), _CHUNK):
            for row in conn.execute(select(limits).where(limits.c.company_id.in_(company_ids[i:i + _CHUNK]))):
                overrides[row.company_id] = Override(row.requests_per_minute, row.key_requests_per_minute,
                                                     row.sync_concurrency)
        if purge:
            conn.execute(delete(table).where(table.c.minute < minute - 1))
    return totals, overrides


def get_override(session: Session, company: Company) -> Override:
    row = session.get(CompanyLimits, pk(company))
    if row is None:
        return Override()
    return Override(row.requests_per_minute, row.key_requests_per_minute, row.sync_concurrency)


def set_override(session: Session, company: Company, override: Override) -> Override:
    """Replaces the company's override (all None: the defaults again). Rates >= 0 (0: no limit), concurrency
    >= 1."""
    for name, value, least in (("requests per minute", override.company_per_minute, 0),
                               ("key requests per minute", override.key_per_minute, 0),
                               ("sync concurrency", override.sync_concurrency, 1)):
        if value is not None and value < least:
            raise Invalid(f"{name} must be at least {least}")
    row = session.get(CompanyLimits, pk(company))
    if override == Override():
        if row is not None:
            session.delete(row)
            session.flush()
        return override
    row = row or CompanyLimits(company_id=pk(company))
    row.requests_per_minute, row.key_requests_per_minute = override.company_per_minute, override.key_per_minute
    row.sync_concurrency, row.updated_at = override.sync_concurrency, utcnow()
    session.add(row)
    return override


# --- the process's limits --------------------------------------------------------------------------------------

class ExecuteLimits:
    """The limits of one API process: admission by rate (``admit``), fairness (``sync_slot``), and the task
    that shares the counts through the store. One per app (``AppContext.limits``)."""

    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], float] = time.time):
        self.engine, self._clock = engine, clock
        self.defaults = default_limits(settings)
        self.sync_seconds = settings.rate_limit_sync_seconds
        self.counters = RequestCounters(clock)
        self.slots = CompanySlots(settings.sync_queue_seconds)
        self._overrides: dict[int, Override] = {}
        self._seen: dict[int, float] = {}  # company id: when it last called (whose override to read)
        self._purged = 0  # the window whose old rows this process last deleted
        self._failing = False  # the last sync failed (warned once per outage)
        self._last_request = 0.0
        self._task: asyncio.Task[None] | None = None
        self._syncing = asyncio.Lock()

    def limits(self, company_id: int) -> Limits:
        override = self._overrides.get(company_id)
        return override.over(self.defaults) if override is not None else self.defaults

    def admit(self, company_id: int, key_scope: str) -> Quota | None:
        """Counts one execute request of ``key_scope`` (``key:<id>`` or ``user:<id>``) in ``company_id``:
        its quota, None when no rate limit applies, or ``RateLimited``. No I/O: the sync runs beside."""
        limits = self.limits(company_id)
        self._seen[company_id] = self._last_request = self._clock()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sync_while_busy())
        return self.counters.admit(((key_scope, limits.key_per_minute, "API key"),
                                    (f"company:{company_id}", limits.company_per_minute, "company")))

    def sync_slot(self, company_id: int) -> contextlib.AbstractAsyncContextManager[None]:
        """A turn among the company's sync executions in flight in this process (or ``RateLimited``)."""
        return self.slots.slot(company_id, self.limits(company_id).sync_concurrency)

    async def _sync_while_busy(self) -> None:
        """Syncs now, then every ``sync_seconds`` while requests keep coming and ``KEEP_SYNCING_SECONDS`` after
        the last: at most one sync per interval, and none while the process is idle."""
        try:
            while True:
                await self.sync()
                await asyncio.sleep(self.sync_seconds)
                idle = self._clock() - self._last_request > KEEP_SYNCING_SECONDS
                if idle and not self.counters.pending:
                    return
        finally:
            self._task = None

    async def sync(self) -> None:
        """One exchange with the store: this process's counts out, the totals and overrides in."""
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
        window, increments, scopes = self.counters.take_pending()
        recent = window - 2 * WINDOW_SECONDS
        self._seen = {c: t for c, t in self._seen.items() if t >= recent}
        purge = window != self._purged
        try:
            totals, overrides = await asyncio.to_thread(sync_counts, self.engine, window, increments, scopes,
                                                        sorted(self._seen), purge)
        except Exception as e:  # the store is down or failing over: limits stay local until it answers
            if not self._failing:
                log.warning("rate limit counters not synced (limits are per process until the store answers): "
                            "%s: %s", type(e).__name__, e)
            self._failing = True
            self.counters.sync_failed(window)
            return
        if self._failing:
            log.info("rate limit counters synced again")
            self._failing = False
        self.counters.synced(window, totals)
        self._overrides = overrides
        if purge:
            self._purged = window

    async def close(self) -> None:
        """Stops the sync task and sends what is left (the app's shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.counters.pending:
            await self.sync()
