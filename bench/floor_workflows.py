"""No-op workflows for the floor comparison, run like our QueryWorkflow (unsandboxed)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

# Workflow id -> the caller's future: the no-op local activity hands its result to the process that started
# the workflow, as our sync path's activity does (dataapi/handoff.py), instead of the caller waiting for the
# workflow's completion to travel through Temporal.
HANDOFF: dict[str, asyncio.Future] = {}


@activity.defn(name="floor_noop")
async def noop(x: int) -> int:
    waiting = HANDOFF.pop(activity.info().workflow_id, None)
    if waiting is not None and not waiting.done():
        waiting.set_result(x)
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


@workflow.defn(name="BareQuery")
class BareQuery:
    """The bare handler made durable with Temporal's least (``bench/bare.py --temporal``): an eagerly started
    workflow whose one local activity runs the bare handler's query and hands the answer to the request
    in-process, as our sync path does. No auth, store, search attributes or timeouts beyond the activity's."""

    @workflow.run
    async def run(self, inp: list) -> int:
        # One attempt: a query that fails fails the workflow, as it fails the plain handler's request.
        return await workflow.execute_local_activity("bare_query", inp, start_to_close_timeout=timedelta(seconds=70),
                                                     retry_policy=RetryPolicy(maximum_attempts=1))
