"""Comparison 8: an async export of every sales row (1M in the full run) as Parquet and as CSV, beside DuckDB's
own ``COPY (query) TO`` of the same query, the limit. Two sizes (a tenth and all of the rows): the API's and
the worker's peak RSS should stay flat in result size, since rows stream to the artifact store and back out."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import data
from bench.report import Row
from bench.tenant import COMPANY, dataapi

SLUG = "export-vendas"
# A filter, not LIMIT or ORDER BY: DuckDB holds every row up to a LIMIT (its parallel limit collects them) and every
# row of a sort, in our worker and in COPY alike; a filter streams, so the memory measured is the export's own.
SQL = "SELECT * FROM vendas WHERE id <= $n"  # noqa: S608 - a constant
FORMATS = ("parquet", "csv")
# DuckDB's COPY of the same query in a process of its own: its time and its peak RSS.
_COPY = """
import json, resource, sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET enable_progress_bar = false")
started = time.perf_counter()
query = f"SELECT * FROM vendas WHERE id <= {int(sys.argv[2])}"
con.execute(f"COPY ({query}) TO '{sys.argv[3]}' (FORMAT {sys.argv[4]})")
print(json.dumps({"s": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _apply_endpoint(ctx, rows: int) -> None:
    endpoint = {"namespace": "bench", "slug": SLUG, "execution_mode": "async", "sql": SQL, "max_rows": 100,
                "export_max_rows": rows, "parameters": [{"name": "n", "type": "integer", "required": True}]}
    path = ctx.stack.work / "export-endpoint.json"
    path.write_text(json.dumps({"company": COMPANY, "endpoints": [endpoint]}))
    dataapi(ctx.stack.env, "endpoints", "apply", str(path))


async def _ours(ctx, rows: int, fmt: str) -> dict:
    """Submit, poll until completed, download the whole result in ``fmt``: seconds of each, and bytes."""
    started = time.perf_counter()
    r = await ctx.client.post(f"{ctx.stack.api}/api/v1/data-api/bench/{SLUG}/execute",
                              json={"parameter_values": {"n": rows}}, headers=ctx.auth)
    r.raise_for_status()
    polling = ctx.stack.api + r.json()["polling_url"]
    while True:
        job = (await ctx.client.get(polling, headers=ctx.auth)).json()
        if job["status"] != "processing":
            break
        await asyncio.sleep(0.05)
    if job["status"] != "completed" or job.get("total_row_count") != rows:
        raise AssertionError(f"export of {rows} rows: {job['status']} {job.get('error')} {job.get('total_row_count')}")
    stored = time.perf_counter()
    size = 0
    async with ctx.client.stream("GET", f"{polling}/result", params={"format": fmt},
                                 headers={**ctx.auth, "Accept-Encoding": "identity"}) as answer:
        answer.raise_for_status()
        async for chunk in answer.aiter_raw():
            size += len(chunk)
    done = time.perf_counter()
    return {"stored_s": round(stored - started, 2), "download_s": round(done - stored, 2),
            "total_s": round(done - started, 2), "mb": round(size / 1e6, 1)}


def _copy(db: Path, rows: int, fmt: str, target: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _COPY, str(db), str(rows), str(target), fmt],  # noqa: S603
                         capture_output=True, text=True, check=True, timeout=600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    size = target.stat().st_size
    target.unlink()
    return {"total_s": round(result["s"], 2), "peak_mb": round(result["peak_mb"], 1), "mb": round(size / 1e6, 1)}


async def export(ctx) -> dict:
    rows = ctx.plan.rows
    _apply_endpoint(ctx, rows)
    db = data.write_duckdb(ctx.stack.work / "sales.parquet", ctx.stack.work / "export-copy.duckdb")
    sizes = (rows // 10, rows)
    out: dict = {"rows": list(sizes)}
    for fmt in FORMATS:
        for n in sizes:
            with ctx.monitor() as m:
                ours = await _ours(ctx, n, fmt)
            procs = m.report()
            ours |= {"api_peak_mb": procs["api"]["peak_mb"], "worker_peak_mb": procs["worker"]["peak_mb"],
                     "api_growth_mb": procs["api"]["growth_mb"], "worker_growth_mb": procs["worker"]["growth_mb"]}
            copy = await asyncio.to_thread(_copy, db, n, fmt, ctx.stack.work / f"copy.{fmt}")
            out[f"{fmt}_{n}"] = {"ours": ours, "copy": copy}
            ctx.log(f"export {fmt} {n:,} rows: ours {ours['total_s']} s (API peak {ours['api_peak_mb']} MB, worker "
                    f"{ours['worker_peak_mb']} MB), DuckDB COPY {copy['total_s']} s ({copy['peak_mb']} MB)")
    return out


def report_rows(e: dict | None) -> list[Row]:
    if not e or "rows" not in e:
        return []
    out = []
    small, big = e["rows"]
    for fmt in FORMATS:
        label, o, c = f"8 export {fmt}", e[f"{fmt}_{big}"]["ours"], e[f"{fmt}_{big}"]["copy"]
        small_o = e[f"{fmt}_{small}"]["ours"]
        out.append(Row(label, f"{big:,} rows: submit->downloaded (s) vs COPY TO", o["total_s"], c["total_s"]))
        out.append(Row(label, "  of which stored (s) / downloaded (s)", o["stored_s"], o["download_s"]))
        out.append(Row(label, "  size MB (ours vs COPY)", o["mb"], c["mb"]))
        out.append(Row(label, f"worker peak RSS MB ({small:,} -> {big:,} rows)", o["worker_peak_mb"],
                       small_o["worker_peak_mb"]))
        out.append(Row(label, f"API peak RSS MB ({small:,} -> {big:,} rows)", o["api_peak_mb"],
                       small_o["api_peak_mb"]))
        out.append(Row(label, "  DuckDB COPY process peak RSS MB", c["peak_mb"]))
    return out
