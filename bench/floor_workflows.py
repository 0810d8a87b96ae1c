"""No-op workflows for the floor comparison (imported by the workflow sandbox: nothing heavy here)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="floor_noop")
async def noop(x: int) -> int:
    return x


@workflow.defn(name="FloorLocal")
class FloorLocal:
    """The sync path's shape: one local activity."""

    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_local_activity(noop, x, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(name="FloorRemote")
class FloorRemote:
    """The async path's shape: one activity through the task queue."""

    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(noop, x, start_to_close_timeout=timedelta(seconds=30),
                                               heartbeat_timeout=timedelta(seconds=10))
