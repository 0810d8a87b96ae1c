"""Delivers one finished job's result to its callback URL on a multi-day retry schedule.

A child of the query workflow (abandoned when the parent closes: the job never waits on its callback) or
started alone by a redelivery. The timers are durable: worker and server restarts lose nothing, and every
attempt of one delivery carries the same webhook-id.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.callbacks import CallbackActivities
    from dataapi.messages import AttemptInput, CallbackInput

# An attempt is one POST; retrying the activity itself only covers infrastructure failures (store down).
_ATTEMPT = {"start_to_close_timeout": timedelta(seconds=60), "heartbeat_timeout": timedelta(seconds=10),
            "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                                        maximum_attempts=5)}


@workflow.defn(name="CallbackWorkflow")
class CallbackWorkflow:
    @workflow.run
    async def run(self, inp: CallbackInput) -> str:
        delays = inp.schedule_seconds or [0.0]
        wait = delays[0]
        for attempt in range(1, len(delays) + 1):
            if wait > 0:
                await workflow.sleep(timedelta(seconds=wait))
            scheduled = self._jittered(delays[attempt], inp.jitter) if attempt < len(delays) else None
            out = await workflow.execute_activity_method(
                CallbackActivities.deliver_callback,
                AttemptInput(inp.delivery_id, inp.job_id, attempt, scheduled), **_ATTEMPT)
            if out.next_delay_seconds is None:
                return out.outcome if out.outcome != "retry" else "failed"
            wait = out.next_delay_seconds
        return "failed"

    @staticmethod
    def _jittered(delay: float, jitter: float) -> float:
        return max(0.0, delay * (1 + jitter * (2 * workflow.random().random() - 1)))
