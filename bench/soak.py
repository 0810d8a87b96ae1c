"""``python -m bench.soak [--minutes 5] [--rate 4] [--concurrency 24] [--out bench/results/soak.json]``

Soak: bounded, loopback-only mixed traffic against the whole stack run as production runs it (the benchmark's
Temporal dev server, ``dataapi worker`` and ``dataapi api`` processes and its company, see bench/README.md),
for a fixed time at a fixed request rate (an open loop: operations start on a schedule, at most
``--concurrency`` in flight, so the run measures a steady load rather than saturating the CPUs).

The mix, interleaved evenly: sync executions (point lookups, every tenth a group-by over the whole table),
point lookups of an endpoint with the result cache on (the API's cache bound small, so that it evicts all along:
its bytes, sampled from ``/metrics``, must stay within the bound),
async executions polled to completion, async executions with a ``callback_url`` to an HTTPS receiver on
127.0.0.1 (every callback must arrive exactly once, with a valid Standard Webhooks signature and the webhook-id
that GET job shows), Jobs API CSV uploads run to their result, and a few deliberately bad requests (each must
get its documented 4xx: these are the *expected* errors). The access token is rotated through
``/auth/refresh`` every minute.

Reported: per kind the count, throughput, p50/p95/p99, expected and unexpected errors; every lost job (not
finished in time), missing, doubled or badly signed callback; and the RSS (plus open files and threads) of
the API, the worker and the Temporal dev server sampled every few seconds, with a trend per process: the
least-squares slope (MB/min) over the second half of the run and the first-minute vs last-minute median.
The API and the worker get a verdict: "no upward trend" when the second-half slope is at most
``--max-slope`` MB/min (runs shorter than 2 minutes are not judged). Temporal's RSS is shown, not judged
(the dev server keeps every history of the run in memory).

Exit status: 0 when nothing unexpected happened and no judged process trends upward, 1 otherwise, 130 when
interrupted. Every process started is stopped on exit, also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

from bench import report
from bench.load import latency_stats
from bench.procs import Processes, cpu_seconds, rss_mb
from bench.queries import FIRST_DAY, NAMESPACE
from bench.receiver import Receiver, _Handler
from bench.scenarios import cache_metrics
from bench.stack import Stack, start_stack
from bench.tenant import dataapi

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = {"sync": 8, "cached": 3, "async_poll": 4, "callback": 3, "upload": 2, "bad": 1}  # per 21 operations
KINDS = [*WEIGHTS, "refresh"]
JOB_TIMEOUT = 120.0  # an async job, callback or upload not finished after this is lost
MEDIUM_ROWS = 40  # 5 regions x 8 products
CSV_LINES = 2_000  # each upload: a header and this many rows
# The "cached" kind asks point lookups of this many ids of the cached endpoint: hits and misses mix, and with the
# soak's small cache bound (--cache-bytes) entries are evicted all along; its bytes are sampled from /metrics.
CACHED_IDS = 200


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mix_sequence(weights: dict[str, int]) -> list[str]:
    """One cycle of kinds, each as often as its weight, spread evenly (smooth weighted round robin)."""
    total, current, out = sum(weights.values()), dict.fromkeys(weights, 0), []
    for _ in range(total):
        for kind, w in weights.items():
            current[kind] += w
        best = max(current, key=current.get)
        current[best] -= total
        out.append(best)
    return out


# --- the callback receiver --------------------------------------------------------------------------------

class _RecordingHandler(_Handler):
    """Keeps every delivery whole (headers, body, arrival) before answering 204."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        arrived = time.time()
        self.server.receiver.record({k.lower(): v for k, v in self.headers.items()}, body, arrived)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()


@dataclass
class Delivery:
    webhook_id: str | None
    arrived: float
    signature_ok: bool
    status: str | None  # the job status in the body


class CallbackReceiver(Receiver):
    """The harness's HTTPS receiver (bench/receiver.py), keeping every delivery and checking its signature with
    the ``standardwebhooks`` library and the company's secret."""

    def __init__(self, pki: Path, secret: str):
        super().__init__(pki)
        self.server.RequestHandlerClass = _RecordingHandler
        self.webhook = Webhook(secret)
        self.deliveries: dict[str, list[Delivery]] = defaultdict(list)
        self.unreadable = 0

    def record(self, headers: dict, body: bytes, arrived: float) -> None:
        try:
            self.webhook.verify(body, headers)
            ok = True
        except WebhookVerificationError:
            ok = False
        try:
            doc = json.loads(body)
            job_id, status = doc["job_id"], doc.get("status")
        except (ValueError, KeyError, TypeError):
            with self._cond:
                self.unreadable += 1
            return
        with self._cond:
            self.deliveries[job_id].append(Delivery(headers.get("webhook-id"), arrived, ok, status))
        self.arrived(job_id, arrived)


# --- outcomes ---------------------------------------------------------------------------------------------

class Unexpected(Exception):
    """Anything the product should not do: a 5xx, a wrong status or body, a timeout, a lost job."""


@dataclass
class KindStats:
    count: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, of the successful operations
    submit: list[float] = field(default_factory=list)  # async kinds: the submission request alone
    expected: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def report(self, seconds: float) -> dict:
        out = {"count": self.count, "ok": self.ok, "per_s": round(self.ok / seconds, 3) if seconds else None,
               "latency": latency_stats(self.latencies), "expected_errors": dict(self.expected),
               "unexpected_errors": dict(self.unexpected), "unexpected_examples": self.examples[:5]}
        if self.submit:
            out["submit_latency"] = latency_stats(self.submit)
        return out


def _reason(r: httpx.Response) -> str:
    try:
        code = r.json().get("code") or r.json().get("message")
    except ValueError:
        code = None
    return f"HTTP {r.status_code}" + (f" {code}" if code else "")


def expect(r: httpx.Response, status: int) -> dict:
    if r.status_code != status:
        raise Unexpected(f"{_reason(r)} (expected {status})")
    try:
        return r.json()
    except ValueError:
        raise Unexpected(f"HTTP {status} with a body that is not JSON") from None


# --- the run ----------------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args, stack: Stack, procs: Processes, client: httpx.AsyncClient, rx: CallbackReceiver):
        self.args, self.stack, self.procs, self.client, self.rx = args, stack, procs, client, rx
        self.rng = random.Random(7)
        self.stats = {k: KindStats() for k in KINDS}
        self.callback_jobs: dict[str, float] = {}  # job_id -> submission (wall clock)
        self.samples: list[dict] = []
        self.fatal: str | None = None
        self.max_lag = 0.0
        self.in_flight = self.max_in_flight = 0
        self.access = self.refresh_token = ""
        lines = [f"{n},{2025 + n % 2}-0{1 + n % 9}-1{n % 10},Sul,Produto {n % 8},{n % 997}.{n % 100:02d}"
                 for n in range(CSV_LINES)]
        self.csv = ("id,data,regiao,produto,valor\n" + "\n".join(lines) + "\n").encode()
        self.bad_cases = _bad_cases(self)

    def url(self, path: str) -> str:
        return self.stack.api + path

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.access}"}

    def execute_url(self, slug: str) -> str:
        return self.url(f"/api/v1/data-api/{NAMESPACE}/{slug}/execute")

    async def login(self) -> None:
        pair = expect(await self.client.post(self.url("/api/v1/auth/api-key"), json=self.stack.tenant.login_body()),
                      200)
        self.access, self.refresh_token = pair["access_token"], pair["refresh_token"]

    # --- operations: each returns (latency, submit latency or None) or raises Unexpected -----------------------

    async def op_sync(self, i: int) -> tuple[float, None]:
        if i % 10 == 9:
            slug, params = "medium", {"data_inicio": FIRST_DAY}
        else:
            slug, params = "point", {"id": self.rng.randint(1, self.args.rows)}
        t0 = time.perf_counter()
        r = await self.client.post(self.execute_url(slug), json={"parameter_values": params}, headers=self.auth)
        elapsed = time.perf_counter() - t0
        _check_rows(expect(r, 200).get("rows"), slug, params)
        return elapsed, None

    async def op_cached(self, i: int) -> tuple[float, None]:
        if i % 5 == 4:
            slug, params = "medium", {"data_inicio": FIRST_DAY}
        else:
            slug, params = "point", {"id": self.rng.randint(1, min(CACHED_IDS, self.args.rows))}
        t0 = time.perf_counter()
        r = await self.client.post(self.execute_url(f"{slug}-cached"), json={"parameter_values": params},
                                   headers=self.auth)
        elapsed = time.perf_counter() - t0
        _check_rows(expect(r, 200).get("rows"), slug, params)
        return elapsed, None

    async def cache_bytes(self) -> dict | None:
        """The API's result cache figures (``/metrics``), or None when they could not be read."""
        try:
            return await cache_metrics(self.client, self.stack.api)
        except httpx.HTTPError:
            return None

    async def op_async_poll(self, i: int) -> tuple[float, float]:
        params = {"id": self.rng.randint(1, self.args.rows)}
        t0 = time.perf_counter()
        r = await self.client.post(self.execute_url("point-async"), json={"parameter_values": params},
                                   headers=self.auth)
        submitted = time.perf_counter() - t0
        accepted = expect(r, 202)
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            job = expect(await self.client.get(self.url(accepted["polling_url"]), headers=self.auth), 200)
            if job["status"] != "processing":
                break
            if time.monotonic() > deadline:
                raise Unexpected(f"lost job: still processing after {JOB_TIMEOUT:g} s")
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - t0
        if job["status"] != "completed":
            raise Unexpected(f"job {job['status']}: {str(job.get('error'))[:80]}")
        _check_rows((job.get("result") or {}).get("rows"), "point", params)
        return elapsed, submitted

    async def op_callback(self, i: int) -> tuple[float, float]:
        params = {"id": self.rng.randint(1, self.args.rows)}
        t0, wall = time.perf_counter(), time.time()
        r = await self.client.post(self.execute_url("point-callback"),
                                   json={"parameter_values": params, "callback_url": self.rx.url}, headers=self.auth)
        submitted = time.perf_counter() - t0
        job_id = expect(r, 202)["job_id"]
        self.callback_jobs[job_id] = wall
        deadline = time.monotonic() + JOB_TIMEOUT
        while job_id not in self.rx.received:  # written by the receiver's threads; checked again at the end
            if time.monotonic() > deadline:
                raise Unexpected(f"callback missing after {JOB_TIMEOUT:g} s")
            await asyncio.sleep(0.05)
        return self.rx.received[job_id] - wall, submitted

    async def op_upload(self, i: int) -> tuple[float, float]:
        headers = self.stack.tenant.jobs_headers()
        t0 = time.perf_counter()
        r = await self.client.post(self.url("/api/v1/job/execute"), headers=headers,
                                   data={"params": json.dumps({"soak": i}), "metadata": json.dumps({"op": i})},
                                   files={"file": (f"soak-{i}.csv", self.csv, "text/csv")})
        submitted = time.perf_counter() - t0
        job_id = expect(r, 201)["job_id"]
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            r = await self.client.get(self.url(f"/api/v1/job/{job_id}/result"), headers=headers)
            if r.status_code != 202:
                break
            if time.monotonic() > deadline:
                raise Unexpected(f"lost job: no result after {JOB_TIMEOUT:g} s")
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - t0
        result = expect(r, 200)
        if result.get("lines") != CSV_LINES + 1 or result.get("bytes") != len(self.csv):
            raise Unexpected(f"wrong result {str(result)[:80]}")
        return elapsed, submitted

    async def op_bad(self, i: int) -> tuple[float, str]:
        """A request a client got wrong: its documented 4xx is the expected error (and counts as ok)."""
        name, send, status = self.bad_cases[(i // len(mix_sequence(WEIGHTS))) % len(self.bad_cases)]
        t0 = time.perf_counter()
        r = await send()
        elapsed = time.perf_counter() - t0
        if r.status_code != status:
            raise Unexpected(f"{name}: {_reason(r)} (expected {status})")
        return elapsed, f"{name}: {status}"

    async def op_refresh(self) -> float:
        t0 = time.perf_counter()
        r = await self.client.post(self.url("/api/v1/auth/refresh"), json={"refresh_token": self.refresh_token})
        elapsed = time.perf_counter() - t0
        pair = expect(r, 200)
        self.access, self.refresh_token = pair["access_token"], pair["refresh_token"]
        return elapsed

    # --- driving --------------------------------------------------------------------------------------------

    def _fail(self, stats: KindStats, reason: str) -> None:
        stats.unexpected[reason.split(":")[0] if reason.startswith(("lost job", "job ")) else reason] += 1
        stats.examples.append(reason)

    async def run_op(self, kind: str, i: int, slots: asyncio.Semaphore) -> None:
        stats = self.stats[kind]
        stats.count += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if kind == "bad":
                elapsed, answer = await self.op_bad(i)
                stats.expected[answer] += 1
                stats.ok += 1
                stats.latencies.append(elapsed)
            else:
                op = {"sync": self.op_sync, "cached": self.op_cached, "async_poll": self.op_async_poll,
                      "callback": self.op_callback, "upload": self.op_upload}[kind]
                elapsed, submitted = await op(i)
                stats.ok += 1
                stats.latencies.append(elapsed)
                if submitted is not None:
                    stats.submit.append(submitted)
        except Unexpected as e:
            self._fail(stats, str(e))
        except httpx.HTTPError as e:
            self._fail(stats, f"{type(e).__name__}: {str(e)[:80]}")
        except Exception as e:  # a bug of the harness or a body of an unexpected shape: counted, never lost
            self._fail(stats, f"{type(e).__name__}: {str(e)[:80]}")
        finally:
            self.in_flight -= 1
            slots.release()

    async def refresher(self, stop: asyncio.Event) -> None:
        every = min(60.0, max(5.0, self.args.minutes * 60 / 5))
        while not await _wait(stop, every):
            stats = self.stats["refresh"]
            stats.count += 1
            try:
                stats.latencies.append(await self.op_refresh())
                stats.ok += 1
            except (Unexpected, httpx.HTTPError) as e:
                self._fail(stats, str(e) or type(e).__name__)

    async def sampler(self, stop: asyncio.Event, started: float) -> None:
        pids = {**self.stack.pids, "harness": os.getpid()}
        while True:
            self.samples.append(_sample(pids, time.monotonic() - started, self.in_flight))
            self.samples[-1]["result_cache"] = await self.cache_bytes()
            try:
                self.procs.check()
            except RuntimeError as e:
                self.fatal = str(e).splitlines()[0]
                stop.set()
                return
            if await _wait(stop, self.args.sample_seconds):
                return

    async def drive(self, seconds: float) -> float:
        """Starts operations on the schedule for ``seconds``; returns when every one of them has ended."""
        sequence, rate = mix_sequence(WEIGHTS), self.args.rate
        slots = asyncio.Semaphore(self.args.concurrency)
        tasks: set[asyncio.Task] = set()
        stop = asyncio.Event()
        started = time.monotonic()
        background = [asyncio.create_task(self.sampler(stop, started)), asyncio.create_task(self.refresher(stop))]
        i = 0
        while not stop.is_set():
            due = started + i / rate
            if due >= started + seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await slots.acquire()  # the bound: a full house delays the schedule (reported as lag)
            self.max_lag = max(self.max_lag, time.monotonic() - due)
            task = asyncio.create_task(self.run_op(sequence[i % len(sequence)], i, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        load_seconds = time.monotonic() - started
        log(f"load window over ({i} operations started); waiting for {len(tasks)} in flight")
        await asyncio.gather(*tasks)
        stop.set()
        await asyncio.gather(*background)
        self.samples.append(_sample({**self.stack.pids, "harness": os.getpid()}, time.monotonic() - started, 0)
                            | {"after_drain": True})
        return load_seconds

    async def check_callbacks(self) -> dict:
        """Every callback job: exactly one delivery, signed, its webhook-id the one GET job shows, delivered."""
        problems: Counter = Counter()
        examples: list[str] = []

        def problem(reason: str, job_id: str) -> None:
            problems[reason] += 1
            examples.append(f"{reason}: {job_id}")

        deadline = time.monotonic() + 30  # late arrivals of the last jobs
        while set(self.callback_jobs) - set(self.rx.deliveries):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # a duplicate would come right after the first
        for job_id in self.callback_jobs:
            got = self.rx.deliveries.get(job_id, [])
            if not got:
                problem("missing", job_id)
                continue
            if len(got) > 1:
                same = len({d.webhook_id for d in got}) == 1
                problem("doubled (same webhook-id: a retry)" if same else "doubled (distinct webhook-ids)", job_id)
            if not all(d.signature_ok for d in got):
                problem("bad signature", job_id)
            if any(d.status != "completed" for d in got):
                problem("body status not completed", job_id)
            r = await self.client.get(self.url(f"/api/v1/data-api/{NAMESPACE}/point-callback/jobs/{job_id}"),
                                      headers=self.auth)
            if r.status_code != 200:
                problem(f"GET job {_reason(r)}", job_id)
                continue
            cb = r.json().get("callback") or {}
            if cb.get("status") != "delivered":
                problem(f"callback status {cb.get('status')}", job_id)
            if cb.get("webhook_id") != got[0].webhook_id:
                problem("webhook-id differs from GET job's", job_id)
            if cb.get("attempts") != 1:
                problem(f"{cb.get('attempts')} attempts", job_id)
        unknown = set(self.rx.deliveries) - set(self.callback_jobs)
        for job_id in unknown:
            problem("callback for a job never submitted", job_id)
        received = sum(len(v) for v in self.rx.deliveries.values())
        return {"jobs": len(self.callback_jobs), "deliveries_received": received,
                "exactly_once": sum(1 for j in self.callback_jobs if len(self.rx.deliveries.get(j, [])) == 1),
                "unreadable_bodies": self.rx.unreadable, "problems": dict(problems), "problem_examples": examples[:10]}


def _bad_cases(s: Soak) -> list[tuple[str, object, int]]:
    """(name, send, expected status): requests a client gets wrong, each with its documented answer."""
    point = s.execute_url("point")

    def post(url, **kw):
        return lambda: s.client.post(url, **kw)

    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    return [
        ("invalid parameter", lambda: s.client.post(point, json={"parameter_values": {"id": "x"}}, headers=s.auth),
         422),
        ("unknown endpoint", lambda: s.client.post(s.execute_url("no-such-endpoint"),
                                                   json={"parameter_values": {}}, headers=s.auth), 404),
        ("unknown body field", lambda: s.client.post(point, json={"parameter_values": {"id": 1}, "x": 1},
                                                     headers=s.auth), 400),
        ("invalid token", post(point, json={"parameter_values": {"id": 1}},
                               headers={"Authorization": "Bearer not.a.token"}), 401),
        ("unknown job", lambda: s.client.get(s.url(f"/api/v1/data-api/{NAMESPACE}/point-async/jobs/"
                                                   f"{uuid.uuid4().hex[:24]}"), headers=s.auth), 404),
        ("http callback_url", lambda: s.client.post(s.execute_url("point-callback"), headers=s.auth, json={
            "parameter_values": {"id": 1}, "callback_url": "http://localhost/hook"}), 422),
        ("upload of a PNG", lambda: s.client.post(s.url("/api/v1/job/execute"), headers=s.stack.tenant.jobs_headers(),
                                                  files={"file": ("x.csv", png, "text/csv")}), 400),
    ]


def _check_rows(rows, slug: str, params: dict) -> None:
    if not isinstance(rows, list):
        raise Unexpected("wrong body: no rows")
    if slug == "point" and (len(rows) != 1 or rows[0].get("id") != params["id"]):
        raise Unexpected("wrong rows")
    if slug == "medium" and len(rows) != MEDIUM_ROWS:
        raise Unexpected(f"wrong rows: {len(rows)}")


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """True when ``event`` was set within ``seconds``."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False


def _count(path: str) -> int | None:
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def _sample(pids: dict[str, int], t: float, in_flight: int) -> dict:
    out = {"t": round(t, 1), "load1": float(Path("/proc/loadavg").read_text().split()[0]), "in_flight": in_flight}
    for name, pid in pids.items():
        rss, cpu = rss_mb(pid), cpu_seconds(pid)
        out[name] = {"rss_mb": round(rss, 1) if rss is not None else None, "fds": _count(f"/proc/{pid}/fd"),
                     "threads": _count(f"/proc/{pid}/task"), "cpu_s": round(cpu, 2) if cpu is not None else None}
    return out


# --- the trend --------------------------------------------------------------------------------------------

def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return None if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 60


def trend(samples: list[dict], name: str, seconds: float, max_slope: float, judged: bool) -> dict:
    points = [(s["t"], s[name]["rss_mb"]) for s in samples
              if not s.get("after_drain") and s.get(name, {}).get("rss_mb") is not None]
    if not points:
        return {"verdict": "no samples"}
    minute = min(60.0, seconds / 4)
    first = [v for t, v in points if t <= minute]
    last = [v for t, v in points if t >= seconds - minute]
    slope = slope_per_minute([(t, v) for t, v in points if t >= seconds / 2])
    out = {
        "samples": len(points), "start_mb": points[0][1], "end_mb": points[-1][1], "min_mb": min(v for _, v in points),
        "max_mb": max(v for _, v in points),
        "first_minute_median_mb": round(statistics.median(first), 1) if first else None,
        "last_minute_median_mb": round(statistics.median(last), 1) if last else None,
        "second_half_slope_mb_per_min": round(slope, 3) if slope is not None else None,
        "window_s": round(minute, 1),
    }
    if first and last:
        out["first_to_last_minute_mb"] = round(out["last_minute_median_mb"] - out["first_minute_median_mb"], 1)
    if not judged:
        out["verdict"] = "not judged"
    elif slope is None:
        out["verdict"] = "too few samples"
    else:
        out["verdict"] = "no upward trend" if slope <= max_slope else "UPWARD TREND"
    return out


# --- the command ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="length of the load window (default 5)")
    p.add_argument("--rate", type=float, default=4.0, help="operations started per second (default 4)")
    p.add_argument("--concurrency", type=int, default=24, help="at most this many operations in flight")
    p.add_argument("--rows", type=int, default=100_000, help="rows of the sales table (default 100,000)")
    p.add_argument("--sample-seconds", type=float, default=None, help="RSS sampling period (default 5, 1 if short)")
    p.add_argument("--max-slope", type=float, default=1.0,
                   help="MB/min over the second half above which a process trends upward (default 1.0)")
    p.add_argument("--cache-bytes", type=int, default=32 << 10,
                   help="the API's result cache bound (DATAAPI_RESULT_CACHE_BYTES; default 32 KiB: about 50 of the "
                        "soak's answers, so that it evicts all along)")
    p.add_argument("--out", type=Path, default=RESULTS / "soak.json", help="JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (var dir, process logs)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.concurrency < 1:
        p.error("--minutes, --rate and --concurrency must be positive")
    if args.sample_seconds is None:
        args.sample_seconds = 5.0 if args.minutes >= 2 else 1.0
    return args


def _load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _meta(args) -> dict:
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=RESULTS.parent,  # noqa: S603,S607
                                  timeout=5, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    commit = git("rev-parse", "--short", "HEAD") or None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "minutes": args.minutes,
            "rate_per_s": args.rate, "concurrency": args.concurrency, "rows": args.rows, "mix": WEIGHTS,
            "sample_seconds": args.sample_seconds, "max_slope_mb_per_min": args.max_slope,
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "git_commit": commit,
            "git_uncommitted_changes": bool(dirty) if dirty is not None else None,
            "versions": {n: version(n) for n in ("duckdb", "temporalio", "starlette", "uvicorn", "httpx")},
            "load_average_at_start": _load_average()}


def _webhook_secret(stack: Stack) -> str:
    """The company's signing secret, read the documented way (``dataapi webhooks secret``)."""
    return json.loads(dataapi(stack.env, "webhooks", "secret", "--company", stack.tenant.company))["secret"]


def _log_errors(procs_dir: Path) -> dict:
    """Lines of the API's and the worker's logs that say ERROR or Traceback (the first few of each)."""
    out = {}
    for name in ("api", "worker"):
        try:
            lines = (procs_dir / f"{name}.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        bad = [ln for ln in lines if " ERROR " in ln or "Traceback" in ln or '"level": "ERROR"' in ln]
        out[name] = {"count": len(bad), "first": [ln[:200] for ln in bad[:5]]}
    return out


async def _run(args, stack: Stack, procs: Processes) -> dict:
    secret = await asyncio.to_thread(_webhook_secret, stack)
    limits = httpx.Limits(max_connections=args.concurrency + 8, max_keepalive_connections=args.concurrency + 8)
    with CallbackReceiver(stack.work / "pki", secret) as rx:
        async with httpx.AsyncClient(timeout=90, limits=limits) as client:
            soak = Soak(args, stack, procs, client, rx)
            await soak.login()
            log("warming up: one operation of each kind")
            for i, kind in enumerate(WEIGHTS):  # not counted: first connections, first DuckDB open, first job
                await soak.run_op(kind, i, asyncio.Semaphore(1))
            warm = {k: s.report(1) for k, s in soak.stats.items() if s.unexpected}
            soak.stats = {k: KindStats() for k in KINDS}
            soak.rx.deliveries.clear()
            soak.callback_jobs.clear()
            if warm:
                raise RuntimeError(f"the warm-up failed: {json.dumps(warm)[:600]}")
            log(f"load: {args.rate:g} operations/s for {args.minutes:g} min, at most {args.concurrency} in flight; "
                f"mix per {sum(WEIGHTS.values())}: " + ", ".join(f"{k} {w}" for k, w in WEIGHTS.items()))
            seconds = await soak.drive(args.minutes * 60)
            log("checking every callback")
            callbacks = await soak.check_callbacks()
    judged = seconds >= 120
    processes = {name: trend(soak.samples, name, seconds, args.max_slope, judged and name in ("api", "worker"))
                 for name in (*stack.pids, "harness")}
    return {"load_seconds": round(seconds, 1), "max_schedule_lag_s": round(soak.max_lag, 3),
            "result_cache": result_cache_summary(soak.samples, args.cache_bytes),
            "cpu": _cpu(soak.samples, seconds),
            "max_in_flight": soak.max_in_flight, "fatal": soak.fatal,
            "kinds": {k: s.report(seconds) for k, s in soak.stats.items()}, "callbacks": callbacks,
            "rss_trend": processes, "samples": soak.samples}


def result_cache_summary(samples: list[dict], bound: int) -> dict:
    """The result cache's bytes over the run (sampled) against its bound, and its counters at the end."""
    seen = [s["result_cache"] for s in samples if s.get("result_cache")]
    last = seen[-1] if seen else {}
    return {"bound_bytes": bound, "samples": len(seen),
            "max_bytes": max((c.get("bytes", 0) for c in seen), default=None),
            **{k: last.get(k) for k in ("hits", "misses", "evictions", "entries")}}


def _cpu(samples: list[dict], seconds: float) -> dict:
    """CPU seconds of each process over the load window, and as a percentage of one core."""
    first, last = samples[0], [s for s in samples if not s.get("after_drain")][-1]
    out = {}
    for name in first:
        if isinstance(first[name], dict) and first[name].get("cpu_s") is not None and last[name].get("cpu_s"):
            used = last[name]["cpu_s"] - first[name]["cpu_s"]
            out[name] = {"cpu_s": round(used, 1), "percent_of_one_core": round(100 * used / max(seconds, 1e-9), 1)}
    return out


def verdict(results: dict) -> list[str]:
    """The reasons the run failed; empty when it passed."""
    out = []
    if results.get("fatal"):
        out.append(f"a process died: {results['fatal']}")
    for kind, r in results["kinds"].items():
        n = sum(r["unexpected_errors"].values())
        if n:
            out.append(f"{kind}: {n} unexpected error(s): {r['unexpected_errors']}")
    if results["callbacks"]["problems"]:
        out.append(f"callbacks: {results['callbacks']['problems']}")
    cache = results.get("result_cache")  # absent from summaries of runs without the cached kind
    if cache is not None and not cache.get("samples"):
        out.append("result cache: its bytes were never read from /metrics")
    elif cache is not None and cache["max_bytes"] > cache["bound_bytes"]:
        out.append(f"result cache: {cache['max_bytes']} bytes held, over its bound of {cache['bound_bytes']}")
    for name, t in results["rss_trend"].items():
        if t.get("verdict") == "UPWARD TREND":
            out.append(f"{name} RSS trends upward: {t['second_half_slope_mb_per_min']} MB/min over the second half")
    return out


def table(results: dict) -> str:
    rows = [f"{'kind':<11} {'count':>6} {'ok':>6} {'ok/s':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} "
            f"{'expected':>8} {'unexpected':>10}"]
    for kind, r in results["kinds"].items():
        lat = r["latency"]
        fmt = [f"{v:9.1f}" if v is not None else f"{'-':>9}" for v in (lat["p50_ms"], lat["p95_ms"], lat["p99_ms"])]
        rows.append(f"{kind:<11} {r['count']:>6} {r['ok']:>6} {r['per_s'] or 0:>6.2f} {' '.join(fmt)} "
                    f"{sum(r['expected_errors'].values()):>8} {sum(r['unexpected_errors'].values()):>10}")
    ok = sum(r["ok"] for r in results["kinds"].values())
    rows.append(f"{'all':<11} {sum(r['count'] for r in results['kinds'].values()):>6} {ok:>6} "
                f"{ok / results['load_seconds']:>6.2f}")
    rows.append("")
    rows.append(f"{'process':<9} {'start MB':>9} {'end MB':>8} {'max MB':>8} {'1st min':>8} {'last min':>9} "
                f"{'slope 2nd half':>15} {'CPU %':>6}  verdict")
    for name, t in results["rss_trend"].items():
        if "start_mb" not in t:
            continue
        slope = t["second_half_slope_mb_per_min"]
        rows.append(f"{name:<9} {t['start_mb']:>9.1f} {t['end_mb']:>8.1f} {t['max_mb']:>8.1f} "
                    f"{t['first_minute_median_mb'] or 0:>8.1f} {t['last_minute_median_mb'] or 0:>9.1f} "
                    f"{(f'{slope:+.2f} MB/min' if slope is not None else '-'):>15} "
                    f"{results['cpu'].get(name, {}).get('percent_of_one_core', 0):>6.1f}  {t['verdict']}")
    return "\n".join(rows)


def _on_sigterm(_sig, _frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="dataapi-soak-"))
    procs = Processes(work / "logs")
    results = {"meta": _meta(args)}
    failed = True
    log(f"soak: {args.minutes:g} min at {args.rate:g} operations/s; work dir {work}")
    try:
        started = time.monotonic()
        stack = start_stack(work, procs, args.rows, set(), log,
                            {"DATAAPI_RESULT_CACHE_BYTES": str(args.cache_bytes)})
        log(f"stack ready in {time.monotonic() - started:.1f} s (pids {stack.pids})")
        results.update(asyncio.run(_run(args, stack, procs)))
        procs.check()
        results["log_errors"] = _log_errors(work / "logs")
        failed = False
    except KeyboardInterrupt:
        log("interrupted; every process stopped")
        return 130
    except Exception:
        traceback.print_exc()
        log(f"the run failed; the process logs are kept in {work / 'logs'}")
        args.keep = True
        return 1
    finally:
        procs.stop_all()
        if failed:
            args.keep = True
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    meta = results["meta"]
    meta["load_average_at_end"] = _load_average()
    loads = [s["load1"] for s in results.pop("samples")]  # summarised by rss_trend and cpu: not committed
    meta["load_average_1min_during"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    results["failures"] = verdict(results)
    results["passed"] = not results["failures"]
    report.write_json(results, args.out)

    print(f"\nSoak: {results['load_seconds']:g} s at {args.rate:g} operations/s (at most {args.concurrency} in "
          f"flight, max reached {results['max_in_flight']}, max schedule lag {results['max_schedule_lag_s']:g} s), "
          f"{meta['cpu_count']} CPUs, load average during the run {meta['load_average_1min_during']['median']:g} "
          f"(median of 1-min), {meta['load_average_1min_during']['max']:g} (max)")
    print(table(results))
    cb = results["callbacks"]
    print(f"\ncallbacks: {cb['jobs']} jobs, {cb['deliveries_received']} deliveries, {cb['exactly_once']} exactly once, "
          f"problems: {cb['problems'] or 'none'}")
    for name, errs in results["log_errors"].items():
        if errs["count"]:
            print(f"{name} log: {errs['count']} ERROR/Traceback line(s), first: {errs['first'][0]}")
    if results["rss_trend"]["api"].get("verdict") == "not judged":
        print(f"RSS trend not judged: the load window is shorter than 2 minutes (threshold {args.max_slope:g} MB/min)")
    else:
        print(f"RSS verdict threshold: second-half slope <= {args.max_slope:g} MB/min (API and worker)")
    rc = results["result_cache"]
    within = rc["max_bytes"] is not None and rc["max_bytes"] <= rc["bound_bytes"]
    print(f"result cache: at most {rc['max_bytes']} bytes sampled ({rc['samples']} samples), its bound "
          f"{rc['bound_bytes']}: {'PASS' if within else 'FAIL'}; hits {rc['hits']}, misses {rc['misses']}, "
          f"evictions {rc['evictions']}")
    print(f"Results: {args.out}")
    if results["failures"]:
        print("FAILED:\n  " + "\n  ".join(results["failures"]), file=sys.stderr)
        return 1
    print("PASSED: no unexpected error, no lost job, every callback exactly once and signed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
