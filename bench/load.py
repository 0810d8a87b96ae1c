"""Load generation from the harness process: latency at concurrency 1 over N requests and throughput at
concurrency C over a fixed duration, in alternating rounds (A B C, B C A, ...) so that drift of the machine
affects every side alike. Timed requests go through ``bench.wire`` (prebuilt HTTP/1.1 requests on keep-alive
connections, tens of microseconds of harness CPU each); httpx sends the untimed ones (answer checks, sizes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench import wire
from bench.procs import cpu_seconds
from bench.queries import NAMESPACE

Call = Callable[[httpx.AsyncClient, str, dict], Awaitable[httpx.Response]]
Raw = Callable[[str, dict], bytes]


@dataclass
class Target:
    """One side of a comparison: ``call(client, query, params)`` sends one request with httpx; ``raw(query,
    params)`` builds the same request as bytes for ``bench.wire``, to ``base``; ``url(query)`` is where it goes."""

    name: str
    call: Call
    raw: Raw
    base: str
    url: Callable[[str], str]
    sent: int = 0  # requests answered, whatever their status


def ours(base: str, token: str, name: str = "ours", suffix: str = "") -> Target:
    """Our execute; under ``name`` "cached" (``suffix`` "-cached") the same query's endpoint with the result cache."""
    headers = {"Authorization": f"Bearer {token}"}

    def url(query: str) -> str:
        return f"{base}/api/v1/data-api/{NAMESPACE}/{query}{suffix}/execute"

    async def call(client: httpx.AsyncClient, query: str, params: dict) -> httpx.Response:
        return await client.post(url(query), json={"parameter_values": params}, headers=headers)

    def raw(query: str, params: dict) -> bytes:
        return wire.request_bytes("POST", url(query), headers=headers, json_body={"parameter_values": params})

    return Target(name, call, raw, base, url)


def bare(base: str, name: str = "bare") -> Target:
    """The bare handler (``bench/bare.py``), or under ``name`` "durable" the same on Temporal."""

    def url(query: str) -> str:
        return f"{base}/query/{query}"

    async def call(client: httpx.AsyncClient, query: str, params: dict) -> httpx.Response:
        return await client.post(url(query), json={"parameter_values": params})

    def raw(query: str, params: dict) -> bytes:
        return wire.request_bytes("POST", url(query), json_body={"parameter_values": params})

    return Target(name, call, raw, base, url)


def datasette(base: str) -> Target:
    def url(query: str) -> str:
        return f"{base}/bench/{query}.json"

    async def call(client: httpx.AsyncClient, query: str, params: dict) -> httpx.Response:
        return await client.get(url(query), params={**params, "_shape": "objects"})

    def raw(query: str, params: dict) -> bytes:
        return wire.request_bytes("GET", url(query), query={**params, "_shape": "objects"})

    return Target("datasette", call, raw, base, url)


def rows_of(response: httpx.Response) -> list[dict]:
    return response.json()["rows"]


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_stats(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": _r(percentile(ms, 0.5)), "p95_ms": _r(percentile(ms, 0.95)),
            "p99_ms": _r(percentile(ms, 0.99)), "mean_ms": _r(sum(ms) / len(ms)) if ms else None,
            "min_ms": _r(min(ms, default=None)), "max_ms": _r(max(ms, default=None))}


def _r(v: float | None, digits: int = 2) -> float | None:
    return round(v, digits) if v is not None else None


class RequestFailed(Exception):
    pass


async def _one(conn: wire.Connection, target: Target, query: str, raw: bytes) -> float:
    """Seconds from sending ``raw`` to the last byte of a 200 response."""
    started = time.perf_counter()
    reply = await conn.send(raw)
    elapsed = time.perf_counter() - started
    target.sent += 1
    if reply.status != 200:
        raise RequestFailed(f"{target.name} {query}: HTTP {reply.status} {reply.body[:200]!r}")
    return elapsed


def _rotations(targets: list[Target], rounds: int) -> list[list[Target]]:
    return [targets[r % len(targets):] + targets[:r % len(targets)] for r in range(rounds)]


async def warm_up(targets: list[Target], query: str, params: list[dict]) -> None:
    for target in targets:
        conn = wire.Connection.to(target.base)
        try:
            for p in params:
                await _one(conn, target, query, target.raw(query, p))
        finally:
            conn.close()


class CpuLedger:
    """CPU seconds of every process of the run, summed over each side's own windows. The sides alternate, so a
    process that serves two sides (the Temporal server, for ours and "durable") is charged to the one whose
    requests it served while its window ran. ``None`` pids: nothing is read."""

    def __init__(self, pids: dict[str, int] | None):
        self.pids = pids or {}
        self.spent: dict[str, dict[str, float]] = {}  # side -> process -> CPU seconds in that side's windows
        self.answered: dict[str, int] = {}  # side -> requests answered (HTTP 200) in its windows

    def start(self) -> dict[str, float]:
        """Every process's CPU seconds now: what ``charge`` takes as the window's start."""
        return {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}

    def charge(self, side: str, started: dict[str, float], answered: int) -> None:
        spent = self.spent.setdefault(side, dict.fromkeys(self.pids, 0.0))
        for name, value in self.start().items():
            spent[name] += value - started[name]
        self.answered[side] = self.answered.get(side, 0) + answered

    def add(self, other: CpuLedger) -> None:
        for side, spent in other.spent.items():
            mine = self.spent.setdefault(side, dict.fromkeys(spent, 0.0))
            for name, value in spent.items():
                mine[name] += value
            self.answered[side] = self.answered.get(side, 0) + other.answered[side]

    def per_answer_ms(self, processes: dict[str, tuple[str, ...]]) -> dict[str, dict]:
        """{side: {process: CPU ms per answered request, ..., "total": ...}} over the processes
        ``processes[side]`` serves it with (by default the process named as the side)."""
        out = {}
        for side, spent in self.spent.items():
            n = max(self.answered[side], 1)
            per = {name: round(spent.get(name, 0.0) * 1000 / n, 2) for name in processes.get(side, (side,))}
            out[side] = {"requests": self.answered[side], **per, "total": round(sum(per.values()), 2)}
        return out


async def latency_rounds(targets: list[Target], query: str, params: list[dict], rounds: int,
                         per_round: int, ledger: CpuLedger | None = None) -> dict[str, dict]:
    """Concurrency 1: ``rounds`` alternating rounds of ``per_round`` sequential requests per target; every
    target gets the same parameter values in the same order, on a connection opened before the round."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    ledger = ledger or CpuLedger(None)
    for r, order in enumerate(_rotations(targets, rounds)):
        chunk = params[r * per_round:(r + 1) * per_round]
        for target in order:
            requests = [target.raw(query, p) for p in chunk]
            conn = wire.Connection.to(target.base)
            await conn.open()
            cpu, before = ledger.start(), len(samples[target.name])
            try:
                for raw in requests:
                    samples[target.name].append(await _one(conn, target, query, raw))
            finally:
                conn.close()
                ledger.charge(target.name, cpu, len(samples[target.name]) - before)
    return {name: latency_stats(s) for name, s in samples.items()}


@dataclass
class _Window:
    started: float
    ends_at: float
    done: list[float] = field(default_factory=list)
    last: float = 0.0  # when the last request started in the window finished
    errors: int = 0
    first_error: str | None = None
    harness_cpu: float = 0.0  # CPU seconds the harness process spent over the window

    @property
    def elapsed(self) -> float:
        return max(self.last, self.ends_at) - self.started


async def _saturate(target: Target, query: str, requests: list[bytes], concurrency: int,
                    seconds: float) -> _Window:
    """``concurrency`` closed-loop clients, each on its own connection (opened before the window), start
    requests for ``seconds``; every request started in the window counts, over the time until the last of them
    finished (so short windows are not biased by slow requests)."""
    conns = [wire.Connection.to(target.base) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    counter = iter(range(10**9))
    cpu = time.process_time()
    now = time.perf_counter()
    window = _Window(now, now + seconds)

    async def worker(conn: wire.Connection) -> None:
        while time.perf_counter() < window.ends_at:
            raw = requests[next(counter) % len(requests)]
            try:
                window.done.append(await _one(conn, target, query, raw))
            except (RequestFailed, OSError, wire.WireError) as e:
                window.errors += 1
                window.first_error = window.first_error or str(e) or type(e).__name__
                await asyncio.sleep(0.05)
            window.last = time.perf_counter()

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        window.harness_cpu = time.process_time() - cpu
        for c in conns:
            c.close()
    return window


async def throughput_rounds(targets: list[Target], query: str, params: list[dict], rounds: int, concurrency: int,
                            seconds: float, ledger: CpuLedger | None = None) -> dict[str, dict]:
    """Concurrency ``concurrency`` for ``seconds`` per target and round, alternating; req/s is the successful
    requests (HTTP 200) over the rounds' time, each round from its start until its last request finished.
    ``harness_cpu_ms_per_request``: what the load generator itself cost the shared CPUs per answer; ``ledger``
    gets every process's CPU over each side's windows."""
    done: dict[str, list[float]] = {t.name: [] for t in targets}
    elapsed: dict[str, float] = dict.fromkeys(done, 0.0)
    errors: dict[str, int] = dict.fromkeys(done, 0)
    first_error: dict[str, str | None] = dict.fromkeys(done)
    harness_cpu: dict[str, float] = dict.fromkeys(done, 0.0)
    requests = {t.name: [t.raw(query, p) for p in params] for t in targets}
    ledger = ledger or CpuLedger(None)
    for order in _rotations(targets, rounds):
        for target in order:
            cpu = ledger.start()
            w = await _saturate(target, query, requests[target.name], concurrency, seconds)
            ledger.charge(target.name, cpu, len(w.done))
            done[target.name] += w.done
            elapsed[target.name] += w.elapsed
            errors[target.name] += w.errors
            first_error[target.name] = first_error[target.name] or w.first_error
            harness_cpu[target.name] += w.harness_cpu
    return {name: {"concurrency": concurrency, "seconds": _r(elapsed[name]), "requests": len(d),
                   "req_per_s": _r(len(d) / elapsed[name], 1), "errors": errors[name],
                   "first_error": first_error[name], "latency_under_load": latency_stats(d),
                   "harness_cpu_ms_per_request": _r(harness_cpu[name] * 1000 / max(len(d), 1), 3)}
            for name, d in done.items()}
