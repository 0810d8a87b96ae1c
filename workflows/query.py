"""One visualization-endpoint execution. The workflow id is the job id.

Sync executions run the query as a local activity (no extra task-queue round trip; the API waits on the
result); async ones as a regular activity that heartbeats, so a killed worker's query is retried on
another. Rows never enter the history: the activity stores them and returns a reference.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities.query import QueryActivities
    from dataapi.messages import FinishInput, QueryInput, QueryOutput

_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5),
                     maximum_attempts=3)
_FINISH = {"start_to_close_timeout": timedelta(seconds=30),
           "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10)}


@workflow.defn(name="QueryWorkflow")
class QueryWorkflow:
    @workflow.run
    async def run(self, inp: QueryInput) -> QueryOutput:
        out = await self._query(inp)
        if out.status != "completed":  # the job is recorded; the workflow shows the failure too
            raise ApplicationError(out.error or "Query execution failed", type=out.error_type, non_retryable=True)
        return out

    async def _query(self, inp: QueryInput) -> QueryOutput:
        timeout = timedelta(seconds=inp.timeout_seconds)
        try:
            if inp.mode == "sync":
                # The activity interrupts the query at the sync deadline; this bound (all attempts
                # together) is only a backstop.
                backstop = timeout + timedelta(seconds=2)
                return await workflow.execute_local_activity_method(
                    QueryActivities.run_query, inp, start_to_close_timeout=backstop,
                    schedule_to_close_timeout=backstop, retry_policy=_RETRY)
            return await workflow.execute_activity_method(
                QueryActivities.run_query, inp, start_to_close_timeout=timeout,
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_seconds), retry_policy=_RETRY)
        except asyncio.CancelledError:
            await _record_failure(inp, "Execution cancelled")
            raise
        except ActivityError as e:
            if isinstance(e.cause, CancelledError):  # the workflow was cancelled while the query ran
                await _record_failure(inp, "Execution cancelled")
                raise asyncio.CancelledError() from e
            workflow.logger.warning("query of job %s failed: %s", inp.job_id, e.cause or e)
            timed_out = isinstance(e.cause, ActivityTimeout)
            error = "Execution timed out" if timed_out else "Internal error during query execution"
            await _record_failure(inp, error)
            return QueryOutput(status="failed", error=error,
                               error_type="ExecutionTimeout" if timed_out else "InternalError")


async def _record_failure(inp: QueryInput, error: str) -> None:
    """Records the job as failed when the query activity could not (cancelled, retries exhausted)."""
    await workflow.execute_local_activity_method(QueryActivities.finish_failed, FinishInput(inp, error), **_FINISH)
