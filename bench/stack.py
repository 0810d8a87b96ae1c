"""Starts what a run needs, as separate processes the way production runs them: a Temporal dev server with
the project's search attributes, ``dataapi worker`` and ``dataapi api`` on a temp var dir, and the baselines
(the bare Starlette + DuckDB app, plain and durable, and Datasette) on copies of the same rows."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import data
from bench.procs import Processes, free_port, wait_http
from bench.queries import BARE, DATASETTE
from bench.receiver import make_pki
from bench.tenant import DATAAPI, Tenant, create_tenant
from cli.dev import temporal_command, wait_for_temporal
from dataapi.settings import Settings

BIN = Path(sys.executable).parent


@dataclass
class Stack:
    settings: Settings
    tenant: Tenant
    api: str  # base URLs
    bare: str | None
    datasette: str | None
    pids: dict[str, int]  # api, worker, temporal (and the baselines)
    ca_bundle: Path
    work: Path
    durable: str | None = None  # the bare handler on Temporal (bench/bare.py --temporal)
    env: dict | None = None  # what ``env`` gives: for ``dataapi`` commands during the run


def env(settings: Settings, ca_bundle: Path, extra: dict[str, str] | None = None) -> dict:
    """The ``DATAAPI_*`` settings every process of the stack (and every ``dataapi`` command) runs with: none of
    the caller's own, only the run's and ``extra``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_")}
    out.update(
        DATAAPI_VAR_DIR=str(settings.var_dir), DATAAPI_API_PORT=str(settings.api_port),
        DATAAPI_TEMPORAL_ADDRESS=settings.temporal_address, DATAAPI_TEMPORAL_UI_PORT=str(settings.temporal_ui_port),
        DATAAPI_AUTH_MAX_FAILURES=str(settings.auth_max_failures),
        DATAAPI_ACCESS_TOKEN_TTL_SECONDS=str(settings.access_token_ttl_seconds),
        DATAAPI_CALLBACK_ALLOW_CIDRS='["127.0.0.0/8","::1/128"]', DATAAPI_CALLBACK_ALLOW_HOSTS='["localhost"]',
        DATAAPI_CALLBACK_CA_BUNDLE=str(ca_bundle),
        DATAAPI_UPLOAD_MAX_BYTES=str(settings.upload_max_bytes),
        DATAAPI_METRICS_PUBLIC="true",  # loopback only: the run reads the result cache and the sync lane from /metrics
    )
    out.update(extra or {})
    return out


def _datasette_metadata(path: Path) -> Path:
    queries = {name: {"sql": sql} for name, sql in DATASETTE.items()}
    path.write_text(json.dumps({"databases": {"bench": {"queries": queries}}}, indent=2))
    return path


def start_stack(work: Path, procs: Processes, rows: int, baselines: set[str], log=print,
                settings_env: dict[str, str] | None = None) -> Stack:
    """``baselines``: a subset of {"bare", "datasette", "durable"}; ``settings_env``: ``DATAAPI_*`` settings for
    our processes beyond the run's own. Everything started is registered in ``procs``."""
    settings = Settings(var_dir=work / "var", api_port=free_port(), temporal_address=f"127.0.0.1:{free_port()}",
                        temporal_ui_port=free_port(), upload_max_bytes=512 << 20,
                        auth_max_failures=1_000_000, access_token_ttl_seconds=7200)  # one login for the run
    settings.var_dir.mkdir(parents=True)
    log(f"generating {rows:,} sales rows and the company (var dir {settings.var_dir})")
    sales = data.write_sales(work / "sales.parquet", rows)
    ca_bundle = make_pki(work / "pki")
    environ = env(settings, ca_bundle, settings_env)
    tenant = create_tenant(environ, work, sales)

    log(f"starting Temporal dev server on {settings.temporal_address}, worker and API on :{settings.api_port}")
    temporal = procs.start("temporal", [*temporal_command(settings), "--headless"], environ, cwd=work)
    asyncio.run(wait_for_temporal(settings, within=60))
    worker = procs.start("worker", [DATAAPI, "worker"], environ, cwd=work)
    api = procs.start("api", [DATAAPI, "api"], environ, cwd=work)
    api_url = f"http://127.0.0.1:{settings.api_port}"
    pids = {"api": api.pid, "worker": worker.pid, "temporal": temporal.pid}

    urls: dict[str, str] = {}  # the bare handler's sides
    queries = work / "bare-queries.json"
    queries.write_text(json.dumps(BARE))
    for side in ("bare", "durable"):
        if side not in baselines:
            continue
        db = data.write_duckdb(sales, work / f"{side}.duckdb")  # DuckDB locks a file per process
        port = free_port()
        durable = ["--temporal", settings.temporal_address, "--namespace", settings.temporal_namespace]
        proc = procs.start(side, [sys.executable, "-m", "bench.bare", "--db", str(db), "--queries", str(queries),
                                  "--port", str(port), "--threads", str(settings.query_threads),
                                  "--memory-limit", settings.query_memory_limit,
                                  *(durable if side == "durable" else [])], environ,
                           cwd=Path(__file__).resolve().parent.parent)
        urls[side], pids[side] = f"http://127.0.0.1:{port}", proc.pid
    datasette_url = None
    if "datasette" in baselines:
        log("copying the rows into SQLite for Datasette")
        db = data.write_sqlite(sales, work / "bench.db")
        port = free_port()
        ds = procs.start("datasette", [str(BIN / "datasette"), "serve", "-i", str(db), "--host", "127.0.0.1",
                                       "--port", str(port), "-m", str(_datasette_metadata(work / "metadata.json")),
                                       "--setting", "sql_time_limit_ms", "60000"], environ, cwd=work)
        datasette_url, pids["datasette"] = f"http://127.0.0.1:{port}", ds.pid

    wait_http(f"{api_url}/readyz", procs, within=60)
    for url in urls.values():
        wait_http(f"{url}/healthz", procs, within=30)
    if datasette_url:
        wait_http(f"{datasette_url}/-/versions.json", procs, within=30)
    return Stack(settings, tenant, api_url, urls.get("bare"), datasette_url, pids, ca_bundle, work, urls.get("durable"),
                 environ)
