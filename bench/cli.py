"""``python -m bench [--quick] [--only NAME,...] [--out bench/results/bench.json]``

Starts the stack and the baselines, runs the selected comparisons side by side, prints the table of medians,
ratios and targets, and writes the summary numbers as JSON. Every process it started is stopped on exit, also
on Ctrl-C and on errors. Targets are reported as PASS/FAIL and never fail the run; a comparison that could not
run does (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx

from bench import export, report, scenarios
from bench.plan import FULL, QUICK, Plan
from bench.procs import Processes
from bench.stack import start_stack

COMPARISONS = {
    "sync": "1. sync execute vs a bare Starlette + DuckDB handler (point and medium queries)",
    "durable": "1b. the same vs that handler made durable with Temporal's least (one eager workflow, one local "
               "activity per request), and async jobs vs its jobs: the durable floor",
    "datasette": "2. sync execute vs a Datasette canned query over the same rows in SQLite",
    "async": "3. async jobs: completed jobs/s and submit-to-completed latency",
    "wide": "4. a 10,000-row result: response time, API and worker RSS",
    "callback": "5. callback: completion-to-receipt latency",
    "upload": "6. Jobs API: CSV uploads of two sizes, time to completed and RSS",
    "cached": "7. the result cache: repeated point and medium questions vs the bare handler and Datasette",
    "export": "8. async export of every row as Parquet and CSV vs DuckDB's COPY TO: time, API and worker peak RSS",
}
SYNC_SIDES = {"sync": "bare", "durable": "durable", "datasette": "datasette"}  # --only name: its side in 1/1b/2
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Comparisons:\n" + "\n".join(f"  {k:10} {v}" for k, v in COMPARISONS.items()))
    p.add_argument("--quick", action="store_true", help="smaller data and fewer requests: under 2 minutes")
    p.add_argument("--only", help="comma-separated comparisons to run (default: all)")
    p.add_argument("--out", type=Path, default=RESULTS / "bench.json", help="JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, var dir, process logs)")
    p.add_argument("--env", action="append", default=[], metavar="DATAAPI_NAME=VALUE",
                   help="a setting for our API and worker (repeatable), e.g. DATAAPI_SYNC_FAST_LANE=false; the "
                        "caller's own DATAAPI_* variables are not passed on")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else list(COMPARISONS)
    unknown = set(args.only) - set(COMPARISONS)
    if unknown or not args.only:
        p.error(f"--only takes a comma-separated subset of {', '.join(COMPARISONS)}")
    pairs = [e.partition("=") for e in args.env]
    if any(not name.startswith("DATAAPI_") or not eq for name, eq, _ in pairs):
        p.error("--env takes DATAAPI_NAME=VALUE")
    args.env = {name: value for name, _, value in pairs}
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _meta(plan: Plan, only: list[str], settings_env: dict[str, str]) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,  # noqa: S607
                                cwd=RESULTS.parent, timeout=5, check=False).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "git_commit": commit, "mode": plan.name,
        "comparisons": only, "settings": settings_env, "plan": vars(plan) | {"upload_mb": list(plan.upload_mb)},
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "versions": {name: version(name) for name in ("duckdb", "temporalio", "starlette", "uvicorn", "datasette")},
        "load_average_at_start": _load_average(),
    }


def _load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine inflates every absolute number."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


async def _login(client: httpx.AsyncClient, base: str, body: dict) -> str:
    r = await client.post(f"{base}/api/v1/auth/api-key", json=body)
    r.raise_for_status()
    return r.json()["access_token"]


def _runs(ctx: scenarios.Context, only: list[str]) -> dict[str, Callable[[], Awaitable[dict]]]:
    """The measurements to make, in order, by the name their summary is kept under."""
    sides = [side for name, side in SYNC_SIDES.items() if name in only]
    runs = {"sync": lambda: scenarios.queries(ctx, sides),
            "cached": lambda: scenarios.cached(ctx, ["bare", "datasette"]),  # the same machine state as sync
            "async": lambda: scenarios.async_jobs(ctx, ["ours", *(["durable"] if "durable" in only else [])]),
            "wide": lambda: scenarios.wide(ctx),
            "callback": lambda: scenarios.callbacks(ctx),
            "upload": lambda: scenarios.uploads(ctx),
            "export": lambda: export.export(ctx)}
    return {name: run for name, run in runs.items() if name in only or (name == "sync" and sides)}


async def _run_scenarios(plan: Plan, only: list[str], stack, procs: Processes) -> dict:
    # Idle connections are dropped by the client before any server would close them (uvicorn's default is 5 s),
    # so a request never races a server-side close of its kept-alive connection.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        token = await _login(client, stack.api, stack.tenant.login_body())
        ctx = scenarios.Context(plan, stack, client, token, log)
        out = {}
        for name, run in _runs(ctx, only).items():
            log(f"{name}: running")
            started = time.monotonic()
            try:
                out[name] = await asyncio.wait_for(run(), plan.scenario_timeout * 2)
            except Exception as e:  # a broken comparison is reported and the others still run
                log(f"{name}: FAILED: {type(e).__name__}: {e}")
                traceback.print_exc()
                out[name] = {"error": f"{type(e).__name__}: {e}"}
            out[name]["seconds"] = round(time.monotonic() - started, 1)
            log(f"{name}: done in {out[name]['seconds']} s")
            procs.check()  # a crashed process ends the run here, with its log
        return out


def _on_sigterm(_sig, _frame):
    raise KeyboardInterrupt


def _measure(args, plan: Plan, work: Path) -> dict:
    """Starts the stack, runs the comparisons and stops every process, whatever happens."""
    procs = Processes(work / "logs")
    started = time.monotonic()
    results = {"meta": _meta(plan, args.only, args.env)}
    try:
        baselines = {side for name, side in (*SYNC_SIDES.items(), ("wide", "bare"), ("cached", "bare"),
                                             ("cached", "datasette")) if name in args.only}
        stack = start_stack(work, procs, plan.rows, baselines, log, args.env)
        log(f"stack ready in {time.monotonic() - started:.1f} s")
        results["scenarios"] = asyncio.run(_run_scenarios(plan, args.only, stack, procs))
    finally:
        procs.stop_all()
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    results["meta"]["load_average_at_end"] = _load_average()
    return results


def _report(args, plan: Plan, results: dict) -> int:
    report.write_json(results, args.out)  # the numbers are kept even if reporting them fails
    rows = report.build_rows(results)
    results["targets"] = report.targets(rows)
    report.write_json(results, args.out)
    meta = results["meta"]
    print(f"\nData API benchmark, {plan.name} mode{' (--quick: smaller data, fewer requests)' if args.quick else ''}"
          f": {plan.rows:,} rows, {meta['cpu_count']} CPUs, {meta['duration_s']} s")
    print(report.table(rows))
    busy = max(meta["load_average_at_start"][0], meta["load_average_at_end"][1])
    if busy > (meta["cpu_count"] or 1):
        print(f"\nWARNING: the machine was busy (load average {busy:.1f} on {meta['cpu_count']} CPUs, this run "
              "included): absolute times are inflated; the alternating rounds keep the ratios comparable.")
    print(f"\nratio = ours / baseline (latency: lower is better; req/s: higher is better). Results: {args.out}")
    failed = [name for name, r in results["scenarios"].items() if "error" in r]
    if failed:
        print(f"comparisons that could not run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    work = Path(tempfile.mkdtemp(prefix="dataapi-bench-"))
    log(f"{plan.name} mode ({plan.rows:,} rows{'; --quick: smaller data, fewer requests' if args.quick else ''}); "
        f"comparisons: {', '.join(args.only)}; work dir {work}")
    try:
        try:
            results = _measure(args, plan, work)
        except KeyboardInterrupt:
            log("interrupted; every process stopped")
            return 130
        except Exception:
            args.keep = True
            traceback.print_exc()
            log(f"the run failed; the data and the process logs are kept in {work}")
            return 1
        return _report(args, plan, results)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
