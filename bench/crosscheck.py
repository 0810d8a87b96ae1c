"""``python -m bench.crosscheck [--rows N] [--rounds N] [--seconds S]``: the harness's numbers beside wrk's.

Starts the stack and the bare handler as ``make bench`` does, then measures the same sync endpoints with two
load generators in alternating rounds: the harness's own (``bench/load.py`` over ``bench/wire.py``) and wrk
(C, one thread, a Lua script that sends the same request and counts non-200 answers). Prints, per query and
side, req/s at concurrency 16 and p50 at concurrency 1 from each tool, and each tool's ours/bare ratio: the
two must tell the same story, or the harness is measuring itself. wrk is not a dependency of the project
(Debian: ``apt-get install wrk``); without it this exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench import load
from bench.procs import Processes
from bench.queries import parameter_values
from bench.stack import start_stack

_LUA = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
%(auth)s
local bad = 0
response = function(status, headers, body) if status ~= 200 then bad = bad + 1 end end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%f %%f\\n", summary.requests,
    e.connect + e.read + e.write + e.timeout + e.status + bad, summary.duration / 1e6, latency:percentile(50) / 1000))
end
"""


def _wrk(work: Path, url: str, body: dict, token: str | None, concurrency: int, seconds: float) -> dict:
    script = work / f"wrk-{concurrency}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script.write_text(_LUA % {"body": json.dumps(json.dumps(body, separators=(",", ":"))), "auth": auth})
    cmd = [shutil.which("wrk") or "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s",
           "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout  # noqa: S603 (our own arguments)
    m = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    n, errors, duration, p50 = int(m[1]), int(m[2]), float(m[3]), float(m[4])
    return {"req_per_s": n / duration, "p50_ms": p50, "errors": errors}


async def _harness16(target: load.Target, query: str, params: list[dict], seconds: float) -> dict:
    return (await load.throughput_rounds([target], query, params, 1, 16, seconds))[target.name]


async def _run(stack, work: Path, rows: int, rounds: int, seconds: float) -> dict:
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(f"{stack.api}/api/v1/auth/api-key", json=stack.tenant.login_body())
        r.raise_for_status()
        token = r.json()["access_token"]
    targets = {"ours": load.ours(stack.api, token), "bare": load.bare(stack.bare)}
    out: dict = {}
    for query in ("point", "medium"):
        params = parameter_values(query, rows, 200)
        await load.warm_up(list(targets.values()), query, params[:10])
        got = {(tool, side, m): [] for tool in ("harness", "wrk") for side in targets for m in ("req_per_s", "p50_ms")}
        errors = 0
        for r in range(rounds):
            for side in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
                url, body = targets[side].url(query), {"parameter_values": params[0]}
                token_or_none = token if side == "ours" else None
                if r % 4 < 2:  # which tool goes first alternates too
                    w16 = _wrk(work, url, body, token_or_none, 16, seconds)
                    h16 = await _harness16(targets[side], query, params, seconds)
                else:
                    h16 = await _harness16(targets[side], query, params, seconds)
                    w16 = _wrk(work, url, body, token_or_none, 16, seconds)
                w1 = _wrk(work, url, body, token_or_none, 1, seconds)
                n1 = 100 if query == "point" else 30
                h1 = (await load.latency_rounds([targets[side]], query, params, 1, n1))[side]
                errors += w16["errors"] + w1["errors"] + h16["errors"]
                got["wrk", side, "req_per_s"].append(w16["req_per_s"])
                got["harness", side, "req_per_s"].append(h16["req_per_s"])
                got["wrk", side, "p50_ms"].append(w1["p50_ms"])
                got["harness", side, "p50_ms"].append(h1["p50_ms"])
        out[query] = {f"{tool} {side} {m}": round(statistics.median(v), 2) for (tool, side, m), v in got.items()}
        out[query]["rounds"] = {f"{tool} {side}": [round(x, 1) for x in v] for (tool, side, m), v in got.items()
                                if m == "req_per_s"}
        out[query]["errors"] = errors
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.crosscheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds per query (default 4)")
    p.add_argument("--seconds", type=float, default=5.0, help="per tool, side and round (default 5)")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk); nothing to compare with", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dataapi-crosscheck-"))
    procs = Processes(work / "logs")
    try:
        stack = start_stack(work, procs, args.rows, {"bare"})
        results = asyncio.run(_run(stack, work, args.rows, args.rounds, args.seconds))
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'query':7} {'tool':8} {'ours req/s c16':>15} {'bare req/s c16':>15} {'ratio':>6}   "
          f"{'ours p50 c1':>11} {'bare p50 c1':>11} {'overhead':>9}")
    for query, r in results.items():
        for tool in ("harness", "wrk"):
            o, b = r[f"{tool} ours req_per_s"], r[f"{tool} bare req_per_s"]
            lo, lb = r[f"{tool} ours p50_ms"], r[f"{tool} bare p50_ms"]
            print(f"{query:7} {tool:8} {o:15.1f} {b:15.1f} {o / b:6.3f}   {lo:9.2f}ms {lb:9.2f}ms {lo - lb:+7.2f}ms")
        print(f"{'':7} req/s c16 by round: " + "; ".join(f"{k} {v}" for k, v in r["rounds"].items()))
        if r["errors"]:
            print(f"{query}: {r['errors']} failed requests", file=sys.stderr)
    print("\nmedians of the rounds; wrk sends one parameter set, the harness cycles through 200")
    return 1 if any(r["errors"] for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
