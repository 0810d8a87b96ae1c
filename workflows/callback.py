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
    from activities.callback_defs import DELIVER_CALLBACK
    from dataapi.messages import AttemptInput, AttemptOutput, CallbackInput
    from dataapi.statuses import AttemptOutcome, DeliveryStatus

# An attempt is one POST; retrying the activity itself only covers infrastructure failures (store down).
_ATTEMPT_TIMEOUT, _ATTEMPT_HEARTBEAT = timedelta(seconds=60), timedelta(seconds=10)
_ATTEMPT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                             maximum_attempts=5)


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
            out = await workflow.execute_activity(
                DELIVER_CALLBACK, AttemptInput(inp.delivery_id, inp.job_id, attempt, scheduled),
                result_type=AttemptOutput,
                start_to_close_timeout=_ATTEMPT_TIMEOUT, heartbeat_timeout=_ATTEMPT_HEARTBEAT,
                retry_policy=_ATTEMPT_RETRY)
            if out.next_delay_seconds is None:
                return out.outcome if out.outcome != AttemptOutcome.RETRY else DeliveryStatus.FAILED
            wait = out.next_delay_seconds
        return DeliveryStatus.FAILED

    @staticmethod
    def _jittered(delay: float, jitter: float) -> float:
        return max(0.0, delay * (1 + jitter * (2 * workflow.random().random() - 1)))
