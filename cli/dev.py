"""``dataapi dev``: the embedded stack in one command.

Starts the Temporal dev server (state in var/temporal.db, Web UI on settings.temporal_ui_port) with the
project's search attributes, migrates the store, creates the demo company on first start, then runs two
workers (queries and callbacks; repository jobs, in a process of their own) and the API as child processes under
a supervisor (cli/supervisor.py): a child that exits is started again after a backoff, and Ctrl-C (or
SIGTERM) stops every process it started, the API first and Temporal last.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cli.prune_schedule import setup_embedded
from cli.supervisor import Supervisor
from dataapi import temporal
from dataapi.db import upgrade
from dataapi.secrets import ensure_metrics_token, metrics_token_path
from dataapi.settings import Settings


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise SystemExit("the `temporal` CLI was not found; install the project (pip install -e .) first")
    return found


def temporal_command(settings: Settings) -> list[str]:
    host, _, port = settings.temporal_address.rpartition(":")
    ip = "127.0.0.1" if host in ("", "localhost") else host
    return [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(settings.var_dir / "temporal.db"),
        "--ip", ip, "--port", port or "7233", "--ui-port", str(settings.temporal_ui_port),
        "--namespace", settings.temporal_namespace, "--log-level", "warn",
        *temporal.ui_codec_flags(settings), *temporal.dev_server_flags(),
    ]


async def wait_for_temporal(settings: Settings, within: float = 30.0,
                            going: Callable[[], bool] = lambda: True) -> None:
    """Until the server answers its health check; gives up after ``within`` seconds or once ``going()`` is
    false (the server exited, or a stop was asked for)."""
    deadline = time.monotonic() + within
    while True:
        try:
            client = await temporal.connect(settings)
            await client.service_client.check_health()
            return
        except Exception:
            if time.monotonic() > deadline or not going():
                raise
            await asyncio.sleep(0.3)


def metrics_banner(settings: Settings) -> str:
    """How to scrape the API's /metrics; unless a token is configured or metrics are public, generates the token
    once into var/metrics-token (0600), which the API then requires."""
    url = f"{settings.base_url}/metrics"
    if settings.metrics_token.strip():
        return f"Metrics: {url} with Authorization: Bearer <DATAAPI_METRICS_TOKEN>"
    if settings.metrics_public:
        return f"Metrics: {url} (public: DATAAPI_METRICS_PUBLIC=true)"
    ensure_metrics_token(settings)
    path = metrics_token_path(settings)
    return f'Metrics (token in {path}): curl -H "Authorization: Bearer $(cat {path})" {url}'


# What the jobs worker's environment leaves out: it needs the payload keyset, none of these.
JOBS_WORKER_WITHHELD = frozenset({"DATAAPI_SECRET_KEY", "DATAAPI_JWT_KEYSET", "DATAAPI_METRICS_TOKEN",
                                  "DATAAPI_CODEC_TOKEN"})


def jobs_worker_env(settings: Settings) -> dict[str, str]:
    """The jobs worker hosts tenants' code: it gets no key it has no use for, and its own metrics port beside
    the other worker's."""
    env = {k: v for k, v in os.environ.items() if k not in JOBS_WORKER_WITHHELD}
    if settings.worker_metrics_port:
        env["DATAAPI_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + 1)
    return env


def run_dev(settings: Settings) -> None:
    from cli.demo import bootstrap_demo

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DATAAPI_VAR_DIR", str(settings.var_dir))  # children resolve the same var/
    upgrade(settings.resolved_database_url)
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    try:
        print(f"starting Temporal dev server on {settings.temporal_address} (log: var/temporal.log)", flush=True)
        server = supervisor.start("temporal", temporal_command(settings), settings.var_dir / "temporal.log")
        try:
            asyncio.run(wait_for_temporal(settings, going=lambda: server.running() and not supervisor.stopping))
        except Exception:
            if supervisor.stopping:
                return
            raise SystemExit(f"the Temporal dev server did not start: see {settings.var_dir / 'temporal.log'}") \
                from None
        demo = bootstrap_demo(settings)
        asyncio.run(setup_embedded(settings))  # the prune schedule and the namespace's history retention
        metrics = metrics_banner(settings)
        dataapi = [sys.executable, "-m", "cli"]
        supervisor.start("worker", [*dataapi, "worker", "--queues", "queries,callbacks"])
        supervisor.start("jobs-worker", [*dataapi, "worker", "--queues", "jobs"], env=jobs_worker_env(settings))
        supervisor.start("api", [*dataapi, "api"])
        print(demo, flush=True)
        print(metrics, flush=True)
        print(f"Temporal UI: http://localhost:{settings.temporal_ui_port}   API: {settings.base_url}   "
              f"docs: {settings.base_url}/docs   console: {settings.base_url}/console\n"
              f"Temporal UI decoding: sign in at {settings.base_url}{temporal.CODEC_PATH}/login with the token "
              f"in var/codec-token (docs/operations.md)\nPress Ctrl-C to stop.", flush=True)
        supervisor.watch()
    finally:
        print("stopping...", flush=True)
        supervisor.stop()
