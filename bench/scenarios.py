"""The comparisons. Each takes the run's context and returns the summary numbers it commits (a small JSON-able
dict: percentiles, rates, growths; never raw samples). A new comparison is a function here, a line in
``bench.cli.COMPARISONS`` and its rows in ``bench.report``."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bench import data, load, wire
from bench.load import Target
from bench.plan import Plan
from bench.procs import ProcessMonitor
from bench.queries import CACHED_DISTINCT, CACHED_SUFFIX, NAMESPACE, WIDE_ROWS, parameter_values
from bench.receiver import Receiver
from bench.stack import Stack


@dataclass
class Context:
    plan: Plan
    stack: Stack
    client: httpx.AsyncClient
    token: str
    log: Callable[[str], None] = print

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def targets(self, *names: str) -> list[Target]:
        made = {"ours": lambda: load.ours(self.stack.api, self.token),
                "cached": lambda: load.ours(self.stack.api, self.token, "cached", CACHED_SUFFIX),
                "bare": lambda: load.bare(self.stack.bare),
                "durable": lambda: load.bare(self.stack.durable, "durable"),
                "datasette": lambda: load.datasette(self.stack.datasette)}
        return [made[n]() for n in names]

    def monitor(self) -> ProcessMonitor:
        """RSS and CPU time of every process of the run, the harness (the load generator) included."""
        return ProcessMonitor({**self.stack.pids, "harness": os.getpid()})


def _normalised(rows: list[dict]) -> list[tuple]:
    return [tuple(round(v, 2) if isinstance(v, float) else v for v in r.values()) for r in rows]


async def _same_answers(ctx: Context, targets: list[Target], query: str, params: dict) -> int:
    """Every side answers the same rows for the same parameters (a guard against comparing different work)."""
    answers = {}
    for t in targets:
        response = await t.call(ctx.client, query, params)
        if response.status_code != 200:
            raise load.RequestFailed(f"{t.name} {query}: HTTP {response.status_code} {response.text[:300]}")
        answers[t.name] = _normalised(load.rows_of(response))
    first = next(iter(answers.values()))
    for name, rows in answers.items():
        if rows != first:
            raise AssertionError(f"{query}: {name} answers differently: {rows[:2]} vs {first[:2]}")
    return len(first)


# --- 1, 1b and 2: sync execute vs the bare handler, the durable one and Datasette ----------------------------

# The processes that serve each side. The Temporal server serves ours and "durable"; their CPU is told apart by
# the windows it was spent in (load.CpuLedger).
SIDE_PROCESSES = {"ours": ("api", "worker", "temporal"), "cached": ("api", "worker", "temporal"),
                  "durable": ("durable", "temporal")}


def _ms(stats: dict, *percentiles: str) -> dict:
    return {p: stats[f"{p}_ms"] for p in percentiles or ("p50", "p95", "p99")}


async def queries(ctx: Context, baselines: list[str]) -> dict:
    """``baselines``: some of "bare", "durable" (the bare handler on Temporal) and "datasette"."""
    plan, out = ctx.plan, {}
    targets = ctx.targets("ours", *baselines)
    everything = load.CpuLedger(ctx.stack.pids)  # every measured window of both queries
    for query, per_round in (("point", plan.point_requests), ("medium", plan.medium_requests)):
        params = parameter_values(query, plan.rows, max(plan.rounds * per_round, 200))
        rows = await _same_answers(ctx, targets, query, params[0])
        await load.warm_up(targets, query, params[-plan.warmup:])
        ctx.log(f"  {query}: {rows} row(s); latency at concurrency 1, {plan.rounds} rounds x {per_round}")
        latency = await load.latency_rounds(targets, query, params, plan.rounds, per_round, everything)
        ctx.log(f"  {query}: throughput at concurrency {plan.concurrency}, "
                f"{plan.rounds} rounds x {plan.throughput_seconds:g} s per side")
        under_load = load.CpuLedger(ctx.stack.pids)
        lane_before = await lane_metrics(ctx.client, ctx.stack.api)
        throughput = await load.throughput_rounds(targets, query, params, plan.rounds,
                                                  plan.concurrency, plan.throughput_seconds, under_load)
        everything.add(under_load)
        lane = {k: v - lane_before.get(k, 0) for k, v in (await lane_metrics(ctx.client, ctx.stack.api)).items()}
        ctx.log(f"  {query}: the sync lane at c{plan.concurrency}: " + ", ".join(f"{k} {v}" for k, v in lane.items()))
        out[query] = {
            "c16_lane": lane,
            "rows": rows, "c1_ms": {side: _ms(s) for side, s in latency.items()},
            "c16_req_s": {side: t["req_per_s"] for side, t in throughput.items()},
            "c16_errors": {side: t["errors"] for side, t in throughput.items() if t["errors"]},
            "c16_cpu_ms": under_load.per_answer_ms(SIDE_PROCESSES),
            "c16_harness_cpu_ms": {side: t["harness_cpu_ms_per_request"] for side, t in throughput.items()},
        }
    out["cpu_ms"] = everything.per_answer_ms(SIDE_PROCESSES)
    return out


# --- 7: the result cache: repeated questions vs the bare handler and Datasette, which compute every answer ---

async def cached(ctx: Context, baselines: list[str]) -> dict:
    """Our endpoints with ``cache_seconds`` asked the same ``CACHED_DISTINCT`` questions over and over (each asked
    once before measuring, so every measured answer is a hit), against ``baselines`` computing each answer."""
    plan, out = ctx.plan, {}
    targets = ctx.targets("cached", *baselines)
    ours = targets[0]
    everything = load.CpuLedger(ctx.stack.pids)
    for query, per_round in (("point", plan.point_requests), ("medium", plan.medium_requests)):
        distinct = parameter_values(query, plan.rows, CACHED_DISTINCT)
        unique = list({tuple(p.items()): p for p in distinct}.values())
        needed = max(plan.rounds * per_round, 200)
        params = [distinct[i % len(distinct)] for i in range(needed)]
        rows = await _same_answers(ctx, targets, query, params[0])
        for p in unique:  # fill the cache: what follows is answered from it
            (await ours.call(ctx.client, query, p)).raise_for_status()
        probe = await ours.call(ctx.client, query, unique[-1])
        if probe.json().get("cached") is not True:
            raise AssertionError(f"{query}: the cached endpoint did not answer from its cache: {probe.text[:200]}")
        await load.warm_up(targets, query, params[-plan.warmup:])
        ctx.log(f"  {query}: {len(unique)} distinct questions, every one cached; latency at concurrency 1, "
                f"{plan.rounds} rounds x {per_round}")
        latency = await load.latency_rounds(targets, query, params, plan.rounds, per_round, everything)
        ctx.log(f"  {query}: throughput at concurrency {plan.concurrency}")
        under_load = load.CpuLedger(ctx.stack.pids)
        throughput = await load.throughput_rounds(targets, query, params, plan.rounds,
                                                  plan.concurrency, plan.throughput_seconds, under_load)
        everything.add(under_load)
        out[query] = {
            "rows": rows, "distinct": len(unique), "c1_ms": {side: _ms(s) for side, s in latency.items()},
            "c16_req_s": {side: t["req_per_s"] for side, t in throughput.items()},
            "c16_errors": {side: t["errors"] for side, t in throughput.items() if t["errors"]},
            "c16_cpu_ms": under_load.per_answer_ms(SIDE_PROCESSES),
        }
    out["cache"] = await cache_metrics(ctx.client, ctx.stack.api)
    return out


async def cache_metrics(client: httpx.AsyncClient, api: str) -> dict:
    """The API's result cache figures from its ``/metrics`` (hits, misses, evictions, bytes and their bound)."""
    return await _metrics(client, api, "dataapi_result_cache_")


async def lane_metrics(client: httpx.AsyncClient, api: str) -> dict:
    """The API's sync lane counters from its ``/metrics`` (handed off, fell back, prefetched, adopted, stopped)."""
    return await _metrics(client, api, "dataapi_sync_lane_")


async def _metrics(client: httpx.AsyncClient, api: str, prefix: str) -> dict:
    r = await client.get(f"{api}/metrics")
    r.raise_for_status()
    out = {}
    for line in r.text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.partition(" ")
            if not name.endswith("_created"):
                out[name.removeprefix(prefix).removesuffix("_total")] = int(float(value))
    return out


# --- 3: async jobs ------------------------------------------------------------------------------------------

def _store_jobs(ctx: Context, ids: list[str]) -> dict[str, tuple[str, float | None, float | None]]:
    """{job_id: (status, created_at, completed_at)} read from the metadata store (microsecond timestamps)."""
    db = sqlite3.connect(f"file:{ctx.stack.settings.var_dir / 'dataapi.db'}?mode=ro", uri=True, timeout=30)
    try:
        found = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for job_id, status, created, completed in db.execute(
                    f"SELECT id, status, created_at, completed_at FROM jobs WHERE id IN ({marks})", chunk):  # noqa: S608
                found[job_id] = (status, _epoch(created), _epoch(completed))
        return found
    finally:
        db.close()


def _epoch(stamp: str | None) -> float | None:
    if stamp is None:
        return None
    ts = datetime.fromisoformat(stamp)
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


async def _until_finished(ctx: Context, ids: list[str], within: float) -> dict:
    """Waits (reading only the jobs still pending, four times a second) until every job has finished or
    ``within`` seconds passed; returns them all as ``_store_jobs`` does."""
    pending, deadline = list(ids), time.monotonic() + within
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        jobs = await asyncio.to_thread(_store_jobs, ctx, pending)
        pending = [i for i in pending if i not in jobs or jobs[i][0] == "processing"]
    return await asyncio.to_thread(_store_jobs, ctx, ids)


async def _durable_finished(ctx: Context, ids: list[str], within: float) -> dict:
    """The durable handler's jobs as ``_store_jobs`` gives ours: its query's end is the job's completion."""
    deadline = time.monotonic() + within
    while True:
        done = (await ctx.client.get(f"{ctx.stack.durable}/jobs")).json()
        if set(ids) <= done.keys() or time.monotonic() > deadline:
            return {i: ("completed", None, done[i]) for i in ids if i in done}
        await asyncio.sleep(0.25)


async def _submit(ctx: Context, slug: str, params: dict, callback_url: str | None = None) -> dict:
    body = {"parameter_values": params} | ({"callback_url": callback_url} if callback_url else {})
    r = await ctx.client.post(f"{ctx.stack.api}/api/v1/data-api/{NAMESPACE}/{slug}/execute", json=body,
                              headers=ctx.auth)
    if r.status_code != 202:
        raise load.RequestFailed(f"{slug}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


async def _submit_all(base: str, requests: list[bytes], concurrency: int) -> tuple[dict[str, float], float]:
    """Sends every request (built before the clock starts) from ``concurrency`` clients; ({job_id: submitted
    at}, seconds the submissions took)."""
    submitted: dict[str, float] = {}
    pending = iter(requests)

    async def submitter(conn: wire.Connection) -> None:
        for raw in pending:
            at = time.time()
            reply = await conn.send(raw)
            if reply.status != 202:
                raise load.RequestFailed(f"submission: HTTP {reply.status} {reply.body[:300]!r}")
            submitted[reply.json()["job_id"]] = at

    conns = [wire.Connection.to(base) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    started = time.time()
    try:
        async with asyncio.TaskGroup() as group:  # one failure cancels the other submitters (no stray load)
            for conn in conns:
                group.create_task(submitter(conn))
    finally:
        for conn in conns:
            conn.close()
    return submitted, time.time() - started


async def async_jobs(ctx: Context, sides: list[str]) -> dict:
    """``sides``: "ours", and "durable" for the durable handler's jobs (the same eager workflow and local
    activity, nothing else): completed jobs per second and submit-to-completed latency, one side after the
    other."""
    n, concurrency = ctx.plan.async_jobs, ctx.plan.concurrency
    params = parameter_values("point-async", ctx.plan.rows, n)
    out = {}
    for side in sides:
        if side == "ours":
            base, finished = ctx.stack.api, _until_finished
            requests = [ctx.targets("ours")[0].raw("point-async", p) for p in params]
            warm = (await _submit(ctx, "point-async", params[0]))["job_id"]
        else:
            base, finished = ctx.stack.durable, _durable_finished
            requests = [wire.request_bytes("POST", f"{base}/jobs/point", json_body={"parameter_values": p})
                        for p in params]
            warm = (await ctx.client.post(f"{base}/jobs/point", json={"parameter_values": params[0]})).json()["job_id"]
        await finished(ctx, [warm], 30)
        submitted, seconds = await _submit_all(base, requests, concurrency)
        started = min(submitted.values())
        ctx.log(f"  {side}: {n} submissions in {seconds:.1f} s; waiting for completion")
        jobs = await finished(ctx, list(submitted), ctx.plan.scenario_timeout)
        done = {i: j for i, j in jobs.items() if j[0] == "completed"}
        last = max((j[2] for j in done.values()), default=started)
        out[side] = {
            "submitted": n, "completed": len(done), "failed": sum(1 for j in jobs.values() if j[0] == "failed"),
            "unfinished": n - sum(1 for j in jobs.values() if j[0] != "processing"),
            "submit_per_s": round(n / seconds, 1), "completed_per_s": round(len(done) / max(last - started, 1e-9), 1),
            "submit_to_completed_ms": _ms(load.latency_stats([j[2] - submitted[i] for i, j in done.items()])),
        }
    return out


# --- 4: a 10,000-row result ---------------------------------------------------------------------------------

async def wide(ctx: Context) -> dict:
    plan = ctx.plan
    targets = ctx.targets("ours", "bare")
    params = parameter_values("wide", plan.rows, max(plan.rounds * plan.wide_requests, 50))
    rows = await _same_answers(ctx, targets, "wide", params[0])
    if rows != WIDE_ROWS:
        raise AssertionError(f"wide returned {rows} rows, not {WIDE_ROWS}")
    with ctx.monitor() as c1:
        await load.warm_up(targets, "wide", params[-2:])
        latency = await load.latency_rounds(targets, "wide", params, plan.rounds, plan.wide_requests)
    with ctx.monitor() as c16:
        throughput = await load.throughput_rounds(targets, "wide", params, 1, plan.concurrency,
                                                  plan.throughput_seconds)
    c1, c16 = c1.report(), c16.report()
    return {"rows": rows, "c1_ms": {side: _ms(s) for side, s in latency.items()},
            "c16_req_s": {side: t["req_per_s"] for side, t in throughput.items()},
            # The API runs the sync queries, so its RSS holds DuckDB's working memory: the bare handler's growth
            # for the same SQL at the same concurrency is the baseline.
            "rss_growth_mb": {"c1": {side: c1[p]["growth_mb"] for side, p in (("ours", "api"), ("bare", "bare"))},
                              "c16": {side: c16[p]["growth_mb"] for side, p in (("ours", "api"), ("bare", "bare"))}},
            "worker_rss_growth_mb": max(c1["worker"]["growth_mb"], c16["worker"]["growth_mb"])}


# --- 5: callbacks -------------------------------------------------------------------------------------------

async def _poll_completed(ctx: Context, polling_url: str, within: float) -> float | None:
    """The wall-clock moment polling (every 20 ms) first sees the job completed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r = await ctx.client.get(ctx.stack.api + polling_url, headers=ctx.auth)
        if r.status_code == 200 and r.json()["status"] != "processing":
            return time.time()
        await asyncio.sleep(0.02)
    return None


async def callbacks(ctx: Context) -> dict:
    k = ctx.plan.callback_jobs
    params = parameter_values("point-callback", ctx.plan.rows, k + 1)
    from_completed, from_polled, missing = [], [], 0
    with Receiver(ctx.stack.work / "pki") as rx:
        for i, p in enumerate(params):  # the first one warms up the callback path and is not counted
            accepted = await _submit(ctx, "point-callback", p, callback_url=rx.url)
            seen, arrived = await asyncio.gather(_poll_completed(ctx, accepted["polling_url"], 30),
                                                 asyncio.to_thread(rx.wait_for, accepted["job_id"], 30))
            completed = (await asyncio.to_thread(_store_jobs, ctx, [accepted["job_id"]]))[accepted["job_id"]][2]
            if i == 0:
                continue
            if arrived is None or completed is None:
                missing += 1
                continue
            from_completed.append(arrived - completed)
            if seen is not None:
                from_polled.append(arrived - seen)
    return {"jobs": k, "missing": missing, "completed_to_receipt_ms": _ms(load.latency_stats(from_completed)),
            "polled_to_receipt_ms": _ms(load.latency_stats(from_polled))}


# --- 6: Jobs API uploads ------------------------------------------------------------------------------------

async def _job_result(ctx: Context, job_id: str, within: float) -> httpx.Response:
    headers = ctx.stack.tenant.jobs_headers()
    deadline = time.monotonic() + within
    while True:
        r = await ctx.client.get(f"{ctx.stack.api}/api/v1/job/{job_id}/result", headers=headers)
        if r.status_code != 202 or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.1)


async def uploads(ctx: Context) -> dict:
    out = {}  # by size, e.g. "50mb"
    headers = ctx.stack.tenant.jobs_headers()
    for mb in ctx.plan.upload_mb:
        path = await asyncio.to_thread(data.write_csv, ctx.stack.work / f"upload-{mb}mb.csv", mb)
        size = path.stat().st_size
        lines = await asyncio.to_thread(_count_lines, path)
        try:
            with ctx.monitor() as procs:
                started = time.perf_counter()
                with path.open("rb") as f:  # streamed from disk by httpx
                    r = await ctx.client.post(f"{ctx.stack.api}/api/v1/job/execute", headers=headers,
                                              files={"file": (path.name, f, "text/csv")})
                uploaded = time.perf_counter() - started
                if r.status_code != 201:
                    raise load.RequestFailed(f"upload of {mb} MB: HTTP {r.status_code} {r.text[:300]}")
                result = await _job_result(ctx, r.json()["job_id"], ctx.plan.scenario_timeout)
                finished = time.perf_counter() - started
        finally:
            path.unlink(missing_ok=True)
        ok = result.status_code == 200 and result.json().get("lines") == lines
        rss = procs.report()
        out[f"{mb}mb"] = {"bytes": size, "upload_s": round(uploaded, 3), "to_completed_s": round(finished, 3),
                          "api_rss_growth_mb": rss["api"]["growth_mb"],
                          "worker_rss_growth_mb": rss["worker"]["growth_mb"], "result_ok": ok}
    return out


def _count_lines(path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
