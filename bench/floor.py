"""Comparison 7, the floor: Temporal alone, on the same dev server as our stack, with no-op workflows of the
shapes ours have. What no product built on it can beat on this machine, measured in the same run:

- sync floor: eager start of a workflow whose one local activity returns at once and hands its result to the
  process that started it (client and worker in the harness process, like our API and its embedded worker,
  and like ours the caller does not wait for the workflow's completion to come back through Temporal), c1; then
  the same at concurrency 16: no-op workflows per second, and the CPU each costs the Temporal server and the
  SDK (the harness process). On a CPU-bound machine that CPU bounds every sync throughput ratio: ours can
  reach at most bare / (bare + floor) of a bare handler's requests per second;
- async floors: no-op workflows started by 16 concurrent clients, completed workflows per second, of both
  shapes an async job of ours can take: one activity through the task queue (a query that outran its local
  attempt, or a thin API's), and eager start with one local activity (a short query done by its local attempt,
  the shape comparison 3 measures).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from bench import load
from bench.floor_workflows import HANDOFF, FloorLocal, FloorRemote, noop
from bench.procs import cpu_seconds
from dataapi.temporal import QUERY_WORKFLOW_RUNNER


async def floor(address: str, namespace: str, temporal_pid: int, c1_requests: int, jobs: int, concurrency: int,
                log=print) -> dict:
    client = await Client.connect(address, namespace=namespace)
    queue = f"floor-{uuid.uuid4().hex[:8]}"
    # The runner our QueryWorkflow has (both of its shapes run unsandboxed): the sandbox alone would add ~3 ms
    # of SDK CPU per workflow here and understate the ceiling.
    async with Worker(client, task_queue=queue, workflows=[FloorLocal, FloorRemote], activities=[noop],
                      workflow_runner=QUERY_WORKFLOW_RUNNER, max_concurrent_activities=8):
        async def one(workflow, i: int, eager: bool):
            return await client.start_workflow(workflow, i, id=f"{queue}-{uuid.uuid4().hex}", task_queue=queue,
                                               request_eager_start=eager)

        async def sync_call(i: int) -> int:
            workflow_id = f"{queue}-{uuid.uuid4().hex}"
            HANDOFF[workflow_id] = handed = asyncio.get_running_loop().create_future()
            try:
                await client.start_workflow(FloorLocal.run, i, id=workflow_id, task_queue=queue,
                                            request_eager_start=True)
                return await asyncio.wait_for(handed, 30)
            finally:
                HANDOFF.pop(workflow_id, None)

        seconds = []
        for i in range(c1_requests + 5):
            started = time.perf_counter()
            await sync_call(i)
            if i >= 5:  # warm-up
                seconds.append(time.perf_counter() - started)
        log(f"  sync floor: {c1_requests} eager no-op workflows at c1")

        gate = asyncio.Semaphore(concurrency)

        async def gated_sync_call(i: int):
            async with gate:
                return await sync_call(i)

        cpu = {"temporal": cpu_seconds(temporal_pid) or 0.0, "sdk": cpu_seconds(os.getpid()) or 0.0}
        started = time.time()
        await asyncio.gather(*(gated_sync_call(i) for i in range(jobs)))
        sync_elapsed = time.time() - started
        cpu = {k: round(((cpu_seconds(temporal_pid if k == "temporal" else os.getpid()) or 0.0) - v) * 1000 / jobs, 2)
               for k, v in cpu.items()}
        log(f"  sync floor: {jobs} eager no-op workflows at c{concurrency} in {sync_elapsed:.1f} s, "
            f"CPU per workflow: Temporal {cpu['temporal']} ms + SDK {cpu['sdk']} ms")

        async def completed_per_s(workflow, eager: bool) -> float:
            async def submit(i: int):
                async with gate:
                    return await one(workflow, i, eager)

            started = time.time()
            handles = await asyncio.gather(*(submit(i) for i in range(jobs)))
            await asyncio.gather(*(h.result() for h in handles))
            return round(jobs / (time.time() - started), 1)

        remote = await completed_per_s(FloorRemote.run, False)
        log(f"  async floor: {jobs} no-op workflows with a remote activity, {remote}/s")
        local = await completed_per_s(FloorLocal.run, True)
        log(f"  async floor: {jobs} eager no-op workflows with a local activity, {local}/s")
    return {"sync_floor": load.latency_stats(seconds), "async_floor_jobs": jobs,
            "async_floor_completed_per_s": remote, "async_local_floor_completed_per_s": local,
            "sync_floor_concurrency": concurrency, "sync_floor_completed_per_s": round(jobs / sync_elapsed, 1),
            "sync_floor_cpu_ms_per_workflow": {**cpu, "total": round(sum(cpu.values()), 2)}}
