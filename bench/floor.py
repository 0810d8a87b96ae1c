"""Comparison 7, the floor: Temporal alone, on the same dev server as our stack, with no-op workflows of the
shapes ours have. What no product built on it can beat on this machine, measured in the same run:

- sync floor: eager start of a workflow whose one local activity returns at once, waited for by the process
  that started it (client and worker in the harness process, like our API and its embedded worker), c1;
- async floor: no-op workflows with one activity through the task queue, started by 16 concurrent clients,
  completed workflows per second.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from bench import load
from bench.floor_workflows import FloorLocal, FloorRemote, noop
from dataapi.temporal import WORKFLOW_RUNNER


async def floor(address: str, namespace: str, c1_requests: int, jobs: int, concurrency: int, log=print) -> dict:
    client = await Client.connect(address, namespace=namespace)
    queue = f"floor-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[FloorLocal, FloorRemote], activities=[noop],
                      workflow_runner=WORKFLOW_RUNNER, max_concurrent_activities=8):
        async def one(workflow, i: int, eager: bool):
            return await client.start_workflow(workflow, i, id=f"{queue}-{uuid.uuid4().hex}", task_queue=queue,
                                               request_eager_start=eager)

        seconds = []
        for i in range(c1_requests + 5):
            started = time.perf_counter()
            await (await one(FloorLocal.run, i, True)).result()
            if i >= 5:  # warm-up
                seconds.append(time.perf_counter() - started)
        log(f"  sync floor: {c1_requests} eager no-op workflows at c1")

        gate = asyncio.Semaphore(concurrency)

        async def submit(i: int):
            async with gate:
                return await one(FloorRemote.run, i, False)

        started = time.time()
        handles = await asyncio.gather(*(submit(i) for i in range(jobs)))
        await asyncio.gather(*(h.result() for h in handles))
        elapsed = time.time() - started
        log(f"  async floor: {jobs} no-op workflows with a remote activity in {elapsed:.1f} s")
    return {"sync_floor": load.latency_stats(seconds), "async_floor_jobs": jobs,
            "async_floor_completed_per_s": round(jobs / elapsed, 1)}
