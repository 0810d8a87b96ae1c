"""CallbackWorkflow's branches with ``deliver_callback`` mocked (the full three-day schedule of failures is
``tests/integration/api/test_callbacks.py::test_full_retry_schedule_under_time_skipping``)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from dataapi.messages import AttemptInput, AttemptOutput, CallbackInput
from tests.unit.workflows.mocks import Recorder, Script, outcome, scheduled_retry_policies
from workflows.callback import CallbackWorkflow

DELIVERED = AttemptOutput("delivered", 200)


class Activities(Recorder):
    def __init__(self, deliver: Script):
        super().__init__()
        self.deliver = deliver

    @activity.defn(name="deliver_callback")
    async def deliver_callback(self, inp: AttemptInput) -> AttemptOutput:
        self.record("deliver_callback", inp)
        return await self.deliver.answer()

    def attempts(self) -> list[AttemptInput]:
        return [c.input for c in self.of("deliver_callback")]

    def times(self) -> list[float]:
        """When each activity attempt was scheduled, in (virtual) seconds after the first."""
        times = [c.info.current_attempt_scheduled_time for c in self.of("deliver_callback")]
        return [(t - times[0]).total_seconds() for t in times]


async def run(client: Client, task_queue: str, acts: Activities, inp: CallbackInput):
    """Runs the workflow to its end; returns its result or its failure's cause, and its handle."""
    async with Worker(client, task_queue=task_queue, workflows=[CallbackWorkflow],
                      activities=[acts.deliver_callback]):
        handle = await client.start_workflow(CallbackWorkflow.run, inp, id=f"callback-{inp.delivery_id}",
                                             task_queue=task_queue)
        return await outcome(handle), handle


def delivery(schedule: list[float], jitter: float = 0.0) -> CallbackInput:
    return CallbackInput(f"msg_{uuid.uuid4().hex}", "job-1", schedule, jitter)


async def test_delivered_first_time(temporal, task_queue):
    acts, inp = Activities(Script(DELIVERED)), delivery([0, 60, 600])
    result, handle = await run(temporal, task_queue, acts, inp)
    assert result == "delivered"
    assert acts.attempts() == [AttemptInput(inp.delivery_id, "job-1", 1, 60.0)]
    [call] = acts.of("deliver_callback")
    assert call.info.start_to_close_timeout == timedelta(seconds=60)
    assert call.info.heartbeat_timeout == timedelta(seconds=10)
    assert await scheduled_retry_policies(handle) == {"deliver_callback": [RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=5)]}


@pytest.mark.parametrize("outcome", ["gone", "refused"])
async def test_final_outcome_stops_the_schedule(temporal, task_queue, outcome):
    acts = Activities(Script(AttemptOutput(outcome, 410 if outcome == "gone" else None)))
    result, _ = await run(temporal, task_queue, acts, delivery([0, 60, 600]))
    assert result == outcome and len(acts.attempts()) == 1


async def test_retries_wait_the_chosen_delay(temporal, task_queue):
    """Each retry waits the delay the attempt chose (a Retry-After wins over the schedule)."""
    acts = Activities(Script(AttemptOutput("retry", 503, 60.0), AttemptOutput("retry", 429, 7200.0), DELIVERED))
    inp = delivery([0, 60, 600, 3600])
    result, _ = await run(temporal, task_queue, acts, inp)
    assert result == "delivered"
    assert acts.attempts() == [AttemptInput(inp.delivery_id, "job-1", n, delay)
                               for n, delay in [(1, 60.0), (2, 600.0), (3, 3600.0)]]
    first, second, third = acts.times()
    assert 60 <= second - first < 65 and 7200 <= third - second < 7205


async def test_first_delay_waits_before_the_first_attempt(temporal, task_queue):
    acts = Activities(Script(DELIVERED))
    inp = delivery([300, 60])
    async with Worker(temporal, task_queue=task_queue, workflows=[CallbackWorkflow],
                      activities=[acts.deliver_callback]):
        handle = await temporal.start_workflow(CallbackWorkflow.run, inp, id=f"callback-{inp.delivery_id}",
                                               task_queue=task_queue)
        assert await handle.result() == "delivered"
        started = (await handle.describe()).start_time
    [call] = acts.of("deliver_callback")
    assert 300 <= (call.info.current_attempt_scheduled_time - started).total_seconds() < 305


@pytest.mark.parametrize(("schedule", "attempts"), [([], 1), ([0, 60], 2)], ids=["no-schedule", "two-attempts"])
async def test_last_retry_reads_as_failed(temporal, task_queue, schedule, attempts):
    """The last attempt carries no next delay; a receiver still failing then leaves the delivery failed (and
    an empty schedule is one attempt right away)."""
    acts = Activities(Script(AttemptOutput("retry", 503, 60.0), AttemptOutput("retry", 503, None)))
    inp = delivery(schedule)
    result, _ = await run(temporal, task_queue, acts, inp)
    assert result == "failed"
    assert [a.attempt for a in acts.attempts()] == list(range(1, attempts + 1))
    assert acts.attempts()[-1].next_delay_seconds is None


async def test_schedule_exhausted_reads_as_failed(temporal, task_queue):
    """An attempt that still asks for a retry after the schedule's last one is not followed by another."""
    acts = Activities(Script(AttemptOutput("retry", 503, 60.0)))
    result, _ = await run(temporal, task_queue, acts, delivery([0, 60]))
    assert result == "failed" and len(acts.attempts()) == 2


async def test_jitter_spreads_the_scheduled_delays(temporal, task_queue):
    acts = Activities(Script(AttemptOutput("retry", 503, 1.0), AttemptOutput("retry", 503, 1.0), DELIVERED))
    schedule = [0, 1000, 1000, 1000]
    await run(temporal, task_queue, acts, delivery(schedule, jitter=0.2))
    delays = [a.next_delay_seconds for a in acts.attempts()]
    assert len(delays) == 3 and all(800 <= d <= 1200 for d in delays)
    assert len(set(delays)) > 1  # drawn from the workflow's seeded random, one per attempt


async def test_infrastructure_failure_is_retried_by_the_activity(temporal, task_queue):
    """An attempt whose activity fails (the store down, not the receiver) is retried as the same attempt."""
    acts = Activities(Script(RuntimeError("store unreachable"), DELIVERED))
    inp = delivery([0, 60])
    result, _ = await run(temporal, task_queue, acts, inp)
    assert result == "delivered"
    assert [(c.input.attempt, c.info.attempt) for c in acts.of("deliver_callback")] == [(1, 1), (1, 2)]


async def test_infrastructure_failure_exhausts_retries(temporal, task_queue):
    acts = Activities(Script(RuntimeError("store unreachable")))
    cause, _ = await run(temporal, task_queue, acts, delivery([0, 60]))
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert [c.info.attempt for c in acts.of("deliver_callback")] == [1, 2, 3, 4, 5]
