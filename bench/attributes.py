"""``python -m bench.attributes [--workflows 300] [--rounds 6]``: what search attributes cost the Temporal server.

The same minimal workflow as the durable baseline (eagerly started, one local activity), on a dev server of its
own started as the project starts it (the project's search attributes and SQLite pragmas), by 16 clients at
once, in alternating rounds of each variant: no attributes, the four of a query on the start (what every sync
call once did), the same four set by the workflow as it ends (``DATAAPI_SYNC_SEARCH_ATTRIBUTES=all``), and an
execution timeout alone. Prints the server's CPU per workflow (``utime + stime`` of its process, ms) for each
round and each variant's median. ``docs/performance.md`` and ``docs/decisions.md`` read it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.procs import cpu_seconds, free_port
from cli.dev import temporal_binary, wait_for_temporal
from dataapi.search_attributes import search_attributes, updates
from dataapi.settings import Settings
from dataapi.temporal import dev_server_flags

ATTRIBUTES = search_attributes("bench", "query", endpoint="bench/point", mode="sync")  # a sync query's four
# variant -> (start options, whether the workflow sets the attributes as it ends)
VARIANTS: dict[str, tuple[dict, bool]] = {
    "none": ({}, False),
    "on the start": ({"search_attributes": ATTRIBUTES}, False),
    "at the end": ({}, True),
    "timeout only": ({"execution_timeout": timedelta(seconds=360)}, False),
}
CONCURRENCY = 16


@activity.defn(name="attributes_echo")
async def echo(value: str) -> str:
    return value


@workflow.defn(name="AttributesProbe")
class Probe:
    @workflow.run
    async def run(self, at_the_end: bool) -> str:
        out = await workflow.execute_local_activity(echo, "x" * 200, start_to_close_timeout=timedelta(seconds=10))
        if at_the_end:
            workflow.upsert_search_attributes(updates(ATTRIBUTES))
        return out


async def _workflows(client: Client, queue: str, variant: str, n: int) -> None:
    """``n`` workflows of ``variant``, ``CONCURRENCY`` at a time."""
    options, at_the_end = VARIANTS[variant]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with gate:
            handle = await client.start_workflow(Probe.run, at_the_end, id=uuid.uuid4().hex, task_queue=queue,
                                                 request_eager_start=True, **options)
            await handle.result()

    await asyncio.gather(*(one() for _ in range(n)))


async def _rounds(settings: Settings, server: subprocess.Popen, workflows: int, rounds: int,
                  log) -> dict[str, list[float]]:
    await wait_for_temporal(settings, within=60, going=lambda: server.poll() is None)
    per_workflow: dict[str, list[float]] = {name: [] for name in VARIANTS}
    client = await Client.connect(settings.temporal_address)  # the SDK's converter, as the durable baseline's

    def server_cpu() -> float:
        seconds = cpu_seconds(server.pid)
        if seconds is None:
            raise RuntimeError("the dev server exited during the measurement")
        return seconds
    queue = f"attributes-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=1) as activations:
        async with Worker(client, task_queue=queue, workflows=[Probe], activities=[echo],
                          workflow_runner=UnsandboxedWorkflowRunner(), workflow_task_executor=activations):
            for round_ in range(rounds):
                for name in VARIANTS:
                    await _workflows(client, queue, name, CONCURRENCY)  # warm
                    before = server_cpu()
                    await _workflows(client, queue, name, workflows)
                    ms = (server_cpu() - before) * 1000 / workflows
                    per_workflow[name].append(ms)
                    log(f"round {round_ + 1}: {name:13s} {ms:6.2f} ms of server CPU per workflow")
    return per_workflow


def measure(workflows: int, rounds: int, log=print) -> dict[str, float]:
    """Each variant's median server CPU per workflow (ms) over ``rounds`` alternating rounds."""
    work = Path(tempfile.mkdtemp(prefix="dataapi-attributes-"))
    host, port = "127.0.0.1", str(free_port())
    server = subprocess.Popen(  # noqa: S603 - the project's own dev server binary
        [temporal_binary(), "server", "start-dev", "--db-filename", str(work / "temporal.db"), "--ip", host,
         "--port", port, "--headless", "--log-level", "error", *dev_server_flags()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        settings = Settings(var_dir=work / "var", temporal_address=f"{host}:{port}")
        per_workflow = asyncio.run(_rounds(settings, server, workflows, rounds, log))
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return {name: round(statistics.median(values), 2) for name, values in per_workflow.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attributes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=300, help="workflows per variant and round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    medians = measure(args.workflows, args.rounds)
    for name, ms in medians.items():
        print(f"median {name:13s} {ms:6.2f} ms of server CPU per workflow")


if __name__ == "__main__":
    main()
