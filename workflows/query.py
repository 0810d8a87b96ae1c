"""One visualization-endpoint execution. The workflow id is the job id.

Sync executions run the query as a local activity (no extra task-queue round trip; the API waits on the
result). Async ones first try the same, within a budget (``local_budget_seconds``): a short query is done
without an activity task of its own (no schedule, dispatch and completion through the server); one still
running at the budget stops, records nothing, and runs as a regular activity that heartbeats, on the worker
processes, so a killed worker's query is retried on another. Rows never enter the history: the activity
stores them and returns a reference.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.query_defs import FINISH_FAILED, RUN_QUERY
    from dataapi.messages import CallbackInput, FinishInput, QueryInput, QueryOutput
    from dataapi.search_attributes import search_attributes, updates
    from dataapi.statuses import ExecutionMode, QueryStatus
    from workflows.callback import CallbackWorkflow

_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5),
                     maximum_attempts=3)
_FINISH_TIMEOUT = timedelta(seconds=30)
_FINISH_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10)
_STORE_GRACE = timedelta(seconds=30)  # a local attempt's time to store its result after the query


@workflow.defn(name="QueryWorkflow")
class QueryWorkflow:
    @workflow.run
    async def run(self, inp: QueryInput) -> QueryOutput:
        try:
            out = await self._query(inp)
        except asyncio.CancelledError:
            _set_attributes(inp, completed=False)
            await self._callback(inp)  # a cancelled async job reads as failed: its callback says so too
            raise
        _set_attributes(inp, completed=out.status == QueryStatus.COMPLETED)
        await self._callback(inp)
        if out.status != QueryStatus.COMPLETED:  # the job is recorded; the workflow shows the failure too
            raise ApplicationError(out.error or "Query execution failed", type=out.error_type, non_retryable=True)
        return out

    async def _callback(self, inp: QueryInput) -> None:
        """Starts the delivery of the job's result as an abandoned child: the job never waits on its callback."""
        if inp.mode != ExecutionMode.ASYNC or not inp.callback_url:
            return
        delivery_id = "msg_" + workflow.uuid4().hex
        await workflow.start_child_workflow(
            CallbackWorkflow.run,
            CallbackInput(delivery_id, inp.job_id, inp.callback_schedule_seconds, inp.callback_jitter),
            id=f"callback-{delivery_id}", task_queue=inp.callback_task_queue or None,
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=search_attributes(inp.company_slug, "callback"))

    async def _query(self, inp: QueryInput) -> QueryOutput:
        timeout = timedelta(seconds=inp.timeout_seconds)
        try:
            if inp.mode == ExecutionMode.SYNC:
                # The activity interrupts the query at the sync deadline; this bound (all attempts
                # together) is only a backstop.
                backstop = timeout + timedelta(seconds=2)
                return await workflow.execute_local_activity(
                    RUN_QUERY, inp, result_type=QueryOutput, start_to_close_timeout=backstop,
                    schedule_to_close_timeout=backstop, retry_policy=_RETRY)
            # No workflow.patched needed: inputs from before this field read 0 and replay the regular activity.
            if inp.local_budget_seconds > 0:
                out = await _local_attempt(inp)
                if out.status != QueryStatus.UNFINISHED:
                    return out
            return await workflow.execute_activity(
                RUN_QUERY, inp, result_type=QueryOutput, start_to_close_timeout=timeout,
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_seconds), retry_policy=_RETRY)
        except asyncio.CancelledError:
            await _record_failure(inp, "Execution cancelled")
            raise
        except FailureError as e:
            cause = _cause(e)
            if isinstance(cause, CancelledError):  # the workflow was cancelled while the query ran
                await _record_failure(inp, "Execution cancelled")
                raise asyncio.CancelledError() from e
            workflow.logger.warning("query of job %s failed: %s", inp.job_id, cause)
            timed_out = isinstance(cause, ActivityTimeout)
            error = "Execution timed out" if timed_out else "Internal error during query execution"
            await _record_failure(inp, error)
            return QueryOutput(status=QueryStatus.FAILED, error=error,
                               error_type="ExecutionTimeout" if timed_out else "InternalError")


def _set_attributes(inp: QueryInput, *, completed: bool) -> None:
    """A sync execution's search attributes, set as its query ends, when its outcome is known: on every one, or
    on those that did not complete (``inp.attributes_on_close``; about 1 ms of the dev server's CPU per workflow
    that carries them, docs/decisions.md). A running sync execution (at most the sync timeout) is found by its
    id or ``WorkflowType="QueryWorkflow"``."""
    if inp.attributes_on_close == "all" or (inp.attributes_on_close == "failures" and not completed):
        workflow.upsert_search_attributes(
            updates(search_attributes(inp.company_slug, "query", endpoint=inp.endpoint, mode=inp.mode)))


async def _local_attempt(inp: QueryInput) -> QueryOutput:
    """One try as a local activity; ``unfinished`` when the query outran its budget or the attempt failed for
    any other reason than the query itself (the store unreachable, say): the regular activity then runs it."""
    try:
        return await workflow.execute_local_activity(
            RUN_QUERY, inp, result_type=QueryOutput,
            start_to_close_timeout=timedelta(seconds=inp.local_budget_seconds) + _STORE_GRACE,
            retry_policy=RetryPolicy(maximum_attempts=1))
    except FailureError as e:
        if isinstance(_cause(e), CancelledError):
            raise
        workflow.logger.info("local attempt of job %s failed, the regular activity runs it: %s", inp.job_id,
                             _cause(e))
        return QueryOutput(status=QueryStatus.UNFINISHED)


def _cause(e: FailureError) -> BaseException | None:
    """What went wrong: a regular activity's failure comes wrapped in an ActivityError, a local activity's as
    the activity's error itself."""
    return e.cause if isinstance(e, ActivityError) else e


async def _record_failure(inp: QueryInput, error: str) -> None:
    """Records the job as failed when the query activity could not (cancelled, retries exhausted)."""
    await workflow.execute_local_activity(FINISH_FAILED, FinishInput(inp, error),
                                         start_to_close_timeout=_FINISH_TIMEOUT, retry_policy=_FINISH_RETRY)
