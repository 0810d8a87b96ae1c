"""``dataapi dev``: the embedded stack in one command.

Starts the Temporal dev server (state in var/temporal.db, Web UI on settings.temporal_ui_port) with the
project's search attributes, migrates the store, creates the demo company on first start, then runs the
worker and the API as child processes. Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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


async def wait_for_temporal(settings: Settings, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            client = await temporal.connect(settings)
            await client.service_client.check_health()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def _spawn(cmd: list[str], log_path: Path | None = None) -> subprocess.Popen:
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115  (closed with the process)
    # Own process group: a terminal Ctrl-C reaches us first, and we stop the children in order.
    return subprocess.Popen(  # noqa: S603  (our own binaries, no shell)
        cmd, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    for p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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


def run_dev(settings: Settings) -> None:
    from dataapi.demo import bootstrap_demo

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DATAAPI_VAR_DIR", str(settings.var_dir))  # children resolve the same var/
    upgrade(settings.resolved_database_url)
    procs: list[subprocess.Popen] = []
    stopping = False

    def on_signal(_sig, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"starting Temporal dev server on {settings.temporal_address} (log: var/temporal.log)", flush=True)
        procs.append(_spawn(temporal_command(settings), settings.var_dir / "temporal.log"))
        asyncio.run(wait_for_temporal(settings))
        demo = bootstrap_demo(settings)
        metrics = metrics_banner(settings)
        dataapi = [sys.executable, "-m", "dataapi.cli"]
        procs.append(_spawn([*dataapi, "worker"]))
        procs.append(_spawn([*dataapi, "api"]))
        print(demo, flush=True)
        print(metrics, flush=True)
        print(f"Temporal UI: http://localhost:{settings.temporal_ui_port}   API: {settings.base_url}   "
              f"docs: {settings.base_url}/docs\n"
              f"Temporal UI decoding: sign in at {settings.base_url}{temporal.CODEC_PATH}/login with the token "
              f"in var/codec-token (docs/operations.md)\nPress Ctrl-C to stop.", flush=True)
        while not stopping:
            for p in procs:
                if p.poll() is not None:
                    print(f"dataapi dev: {' '.join(p.args[:3])} exited with {p.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    stopping = True
            time.sleep(0.3)
    finally:
        print("stopping...", flush=True)
        _stop(procs)
