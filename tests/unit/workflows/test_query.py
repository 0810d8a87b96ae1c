"""QueryWorkflow, branch by branch, with ``run_query``, ``finish_failed`` and ``deliver_callback`` mocked."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker
from temporalio.workflow import ParentClosePolicy

from dataapi.messages import AttemptInput, AttemptOutput, CallbackInput, FinishInput, QueryInput, QueryOutput
from tests.unit.workflows.mocks import HANG, Recorder, Script, child_starts, outcome, scheduled_retry_policies
from workflows.callback import CallbackWorkflow
from workflows.query import QueryWorkflow

COMPLETED = QueryOutput(status="completed", result_key="results/acme/j.json", row_count=3,
                        executed_at="2026-03-01T00:00:00+00:00")
UNFINISHED = QueryOutput(status="unfinished")
QUERY_FAILED = QueryOutput(status="failed", error="Binder Error: column x", error_type="ExecutionError")
QUERY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5),
                          maximum_attempts=3)


def query(**changes) -> QueryInput:
    inp = QueryInput(job_id=f"job-{uuid.uuid4().hex}", company_id=1, company_slug="acme", endpoint_id=7,
                     endpoint="default/monthly", sql="SELECT 1", param_specs=[], params={"mes": "2026-03"},
                     max_rows=100, mode="sync", timeout_seconds=30.0, heartbeat_seconds=10.0,
                     callback_schedule_seconds=[0, 60], callback_jitter=0.0)
    return dataclasses.replace(inp, **changes)


class Activities(Recorder):
    """``run_query`` answers from one script as a local activity and from another as a regular one."""

    def __init__(self, local: Script | None = None, regular: Script | None = None,
                 deliver: Script | None = None):
        super().__init__()
        self.local = local or Script(COMPLETED)
        self.regular = regular or Script(COMPLETED)
        self.deliver = deliver or Script(AttemptOutput("delivered", 200))

    @activity.defn(name="run_query")
    async def run_query(self, inp: QueryInput) -> QueryOutput:
        self.record("run_query", inp)
        return await (self.local if activity.info().is_local else self.regular).answer()

    @activity.defn(name="finish_failed")
    async def finish_failed(self, inp: FinishInput) -> None:
        self.record("finish_failed", inp)

    @activity.defn(name="deliver_callback")
    async def deliver_callback(self, inp: AttemptInput) -> AttemptOutput:
        self.record("deliver_callback", inp)
        return await self.deliver.answer()

    def runs(self, local: bool) -> list:
        return [c for c in self.of("run_query") if c.info.is_local == local]

    def worker(self, client: Client, task_queue: str) -> Worker:
        return Worker(client, task_queue=task_queue, workflows=[QueryWorkflow, CallbackWorkflow],
                      activities=[self.run_query, self.finish_failed, self.deliver_callback])


async def run(client: Client, task_queue: str, acts: Activities, inp: QueryInput):
    """Runs the workflow to its end; returns its result or its failure's cause."""
    async with acts.worker(client, task_queue):
        handle = await client.start_workflow(QueryWorkflow.run, inp, id=inp.job_id, task_queue=task_queue)
        return await outcome(handle)


async def cancelled_while_running(client: Client, task_queue: str, acts: Activities, inp: QueryInput,
                                  script: Script):
    """Starts the workflow, cancels it once ``script``'s activity runs; returns the handle and the failure."""
    async with acts.worker(client, task_queue):
        # A workflow task that runs local activities sees the cancellation when it is heartbeated: at 80% of
        # the workflow task timeout.
        handle = await client.start_workflow(QueryWorkflow.run, inp, id=inp.job_id, task_queue=task_queue,
                                             task_timeout=timedelta(seconds=1))
        await script.started.wait()
        await handle.cancel()
        cause = await outcome(handle)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        return handle, cause


def assert_failed(cause, message: str, error_type: str) -> None:
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable) == (message, error_type, True)


def assert_recorded_failure(acts: Activities, inp: QueryInput, error: str) -> None:
    """``finish_failed`` ran once, locally, with the job and the error, within its own timeout."""
    [finish] = acts.of("finish_failed")
    assert finish.input == FinishInput(inp, error)
    assert finish.info.is_local and finish.info.start_to_close_timeout == timedelta(seconds=30)


# --- sync: one local activity with a backstop ---------------------------------------------------------------

async def test_sync_completed(temporal_realtime, task_queue):
    acts, inp = Activities(), query(callback_url="https://example.com/hook")
    assert await run(temporal_realtime, task_queue, acts, inp) == COMPLETED
    [call] = acts.of("run_query")
    backstop = timedelta(seconds=32)  # the activity stops the query at the deadline; this only backs it up
    assert call.input == inp and call.info.is_local
    assert call.info.start_to_close_timeout == backstop and call.info.schedule_to_close_timeout == backstop
    assert acts.of("finish_failed") == [] and acts.of("deliver_callback") == []  # no callback for sync calls


@pytest.mark.parametrize(("output", "message"), [(QUERY_FAILED, QUERY_FAILED.error),
                                                 (QueryOutput(status="failed"), "Query execution failed")])
async def test_sync_query_failed(temporal_realtime, task_queue, output, message):
    """The activity recorded the failure itself: the workflow fails with its error and records nothing."""
    acts = Activities(local=Script(output))
    assert_failed(await run(temporal_realtime, task_queue, acts, query()), message, output.error_type)
    assert len(acts.of("run_query")) == 1 and acts.of("finish_failed") == []


async def test_sync_attempt_error_is_retried(temporal_realtime, task_queue):
    acts = Activities(local=Script(RuntimeError("store unreachable"), COMPLETED))
    assert await run(temporal_realtime, task_queue, acts, query()) == COMPLETED
    assert [c.info.attempt for c in acts.of("run_query")] == [1, 2] and acts.of("finish_failed") == []


async def test_sync_retries_exhausted_are_recorded(temporal_realtime, task_queue):
    acts, inp = Activities(local=Script(RuntimeError("store unreachable"))), query()
    assert_failed(await run(temporal_realtime, task_queue, acts, inp), "Internal error during query execution",
                  "InternalError")
    assert [c.info.attempt for c in acts.of("run_query")] == [1, 2, 3]
    assert_recorded_failure(acts, inp, "Internal error during query execution")


async def test_sync_backstop_timeout_is_recorded(temporal_realtime, task_queue):
    """A query the activity fails to interrupt is stopped by the backstop (a local activity's timeout is
    wall-clock time in the worker: 2 s past a 0.1 s limit)."""
    acts, inp = Activities(local=Script(HANG)), query(timeout_seconds=0.1)
    assert_failed(await run(temporal_realtime, task_queue, acts, inp), "Execution timed out", "ExecutionTimeout")
    assert_recorded_failure(acts, inp, "Execution timed out")


async def test_sync_cancelled_is_recorded(temporal_realtime, task_queue):
    acts, inp = Activities(local=Script(HANG)), query()
    _, cause = await cancelled_while_running(temporal_realtime, task_queue, acts, inp, acts.local)
    assert isinstance(cause, CancelledError)
    assert_recorded_failure(acts, inp, "Execution cancelled")


def attributes(described) -> dict[str, str]:
    return {pair.key.name: pair.value for pair in described.typed_search_attributes}


SYNC_ATTRIBUTES = {"DataApiCompany": "acme", "DataApiKind": "query", "DataApiEndpoint": "default/monthly",
                   "DataApiMode": "sync"}


@pytest.mark.parametrize(("mode", "output", "expected"), [
    ("all", COMPLETED, SYNC_ATTRIBUTES), ("all", QUERY_FAILED, SYNC_ATTRIBUTES),
    ("failures", COMPLETED, {}), ("failures", QUERY_FAILED, SYNC_ATTRIBUTES)])
async def test_sync_attributes_set_as_the_query_ends(temporal_realtime, task_queue, mode, output, expected):
    """Started without search attributes, a sync execution carries them once closed: every one ("all"), or one
    that did not complete ("failures", DATAAPI_SYNC_SEARCH_ATTRIBUTES' default)."""
    acts, inp = Activities(local=Script(output)), query(attributes_on_close=mode)
    async with acts.worker(temporal_realtime, task_queue):
        handle = await temporal_realtime.start_workflow(QueryWorkflow.run, inp, id=inp.job_id, task_queue=task_queue)
        await outcome(handle)
    assert attributes(await handle.describe()) == expected


@pytest.mark.parametrize("mode", ["all", "failures"])
async def test_sync_attributes_set_when_cancelled(temporal_realtime, task_queue, mode):
    acts, inp = Activities(local=Script(HANG)), query(attributes_on_close=mode)
    handle, _ = await cancelled_while_running(temporal_realtime, task_queue, acts, inp, acts.local)
    assert attributes(await handle.describe()) == SYNC_ATTRIBUTES


async def test_inputs_from_before_set_no_attributes(temporal_realtime, task_queue):
    """An input without ``attributes_on_close`` (written before it existed) runs as it ran then: its attributes
    came with its start, the workflow sets none (tests/histories replay those runs)."""
    acts, inp = Activities(), query()
    assert await run(temporal_realtime, task_queue, acts, inp) == COMPLETED
    handle = temporal_realtime.get_workflow_handle(inp.job_id)
    assert attributes(await handle.describe()) == {}


# --- async: a local attempt within a budget, then a regular activity ----------------------------------------

async def test_async_local_attempt_completes(temporal, task_queue):
    acts, inp = Activities(), query(mode="async", local_budget_seconds=5.0)
    assert await run(temporal, task_queue, acts, inp) == COMPLETED
    [call] = acts.of("run_query")
    assert call.input == inp and call.info.is_local
    assert call.info.start_to_close_timeout == timedelta(seconds=35)  # the budget and the time to store
    assert acts.runs(local=False) == [] and acts.of("finish_failed") == []


async def test_async_local_attempt_query_failed(temporal, task_queue):
    """A query that fails in the local attempt is a result: the regular activity does not run it again."""
    acts = Activities(local=Script(QUERY_FAILED))
    assert_failed(await run(temporal, task_queue, acts, query(mode="async", local_budget_seconds=5.0)),
                  QUERY_FAILED.error, "ExecutionError")
    assert len(acts.runs(local=True)) == 1 and acts.runs(local=False) == [] and acts.of("finish_failed") == []


@pytest.mark.parametrize("local", [Script(UNFINISHED), Script(RuntimeError("store unreachable"))],
                         ids=["unfinished", "attempt-error"])
async def test_async_unfinished_local_attempt_runs_as_regular_activity(temporal, task_queue, local):
    acts = Activities(local=local)
    inp = query(mode="async", local_budget_seconds=5.0, timeout_seconds=900.0, heartbeat_seconds=15.0)
    assert await run(temporal, task_queue, acts, inp) == COMPLETED
    assert len(acts.runs(local=True)) == 1  # one local try, not retried
    [regular] = acts.runs(local=False)
    assert regular.input == inp
    assert regular.info.start_to_close_timeout == timedelta(seconds=900)
    assert regular.info.heartbeat_timeout == timedelta(seconds=15)
    policies = await scheduled_retry_policies(temporal.get_workflow_handle(inp.job_id))
    assert policies == {"run_query": [QUERY_RETRY]}
    assert acts.of("finish_failed") == []


async def test_async_without_budget_runs_as_regular_activity(temporal, task_queue):
    acts = Activities()
    assert await run(temporal, task_queue, acts, query(mode="async", local_budget_seconds=0.0)) == COMPLETED
    assert acts.runs(local=True) == [] and len(acts.runs(local=False)) == 1


async def test_async_regular_retries_exhausted_are_recorded(temporal, task_queue):
    acts, inp = Activities(regular=Script(RuntimeError("worker lost"))), query(mode="async")
    assert_failed(await run(temporal, task_queue, acts, inp), "Internal error during query execution",
                  "InternalError")
    assert [c.info.attempt for c in acts.runs(local=False)] == [1, 2, 3]
    assert_recorded_failure(acts, inp, "Internal error during query execution")


async def test_async_regular_timeout_is_recorded(own_temporal, task_queue):
    """Every attempt outruns the job's timeout."""
    acts, inp = Activities(regular=Script(HANG)), query(mode="async", timeout_seconds=0.3, heartbeat_seconds=60.0)
    assert_failed(await run(own_temporal, task_queue, acts, inp), "Execution timed out", "ExecutionTimeout")
    assert [c.info.attempt for c in acts.runs(local=False)] == [1, 2, 3]
    assert_recorded_failure(acts, inp, "Execution timed out")


@pytest.mark.parametrize("where", ["local", "regular"])
async def test_async_cancelled_is_recorded_and_called_back(temporal_realtime, task_queue, where):
    """A cancelled async job reads as failed, and its callback says so."""
    local = Script(HANG) if where == "local" else Script(UNFINISHED)
    acts = Activities(local=local, regular=Script(HANG))
    inp = query(mode="async", local_budget_seconds=5.0, callback_url="https://example.com/hook")
    handle, cause = await cancelled_while_running(temporal_realtime, task_queue, acts, inp, getattr(acts, where))
    assert isinstance(cause, CancelledError)
    assert_recorded_failure(acts, inp, "Execution cancelled")
    assert len(acts.runs(local=False)) == (where == "regular")
    assert len(await child_starts(temporal_realtime, handle, CallbackInput)) == 1


# --- the callback child --------------------------------------------------------------------------------------

@pytest.mark.parametrize("output", [COMPLETED, QUERY_FAILED], ids=["completed", "failed"])
async def test_async_callback_child_started(temporal, task_queue, output):
    """The delivery is an abandoned child on the parent's queue (no queue given), tagged for the UI."""
    acts = Activities(local=Script(output))
    inp = query(mode="async", local_budget_seconds=5.0, callback_url="https://example.com/hook",
                callback_schedule_seconds=[0, 60, 600], callback_jitter=0.0)
    async with acts.worker(temporal, task_queue):
        handle = await temporal.start_workflow(QueryWorkflow.run, inp, id=inp.job_id, task_queue=task_queue)
        result = await outcome(handle)
        if output is QUERY_FAILED:
            assert_failed(result, QUERY_FAILED.error, "ExecutionError")
        else:
            assert result == COMPLETED
        [child] = await child_starts(temporal, handle, CallbackInput)
        delivery_id = child["input"][0].delivery_id
        assert delivery_id.startswith("msg_") and child["workflow_id"] == f"callback-{delivery_id}"
        assert child["input"] == [CallbackInput(delivery_id, inp.job_id, [0, 60, 600], 0.0)]
        assert child["workflow_type"] == "CallbackWorkflow" and child["task_queue"] == task_queue
        assert child["parent_close_policy"] == ParentClosePolicy.ABANDON.value
        # The child outlives its parent and delivers.
        handle = temporal.get_workflow_handle(child["workflow_id"])
        assert await handle.result() == "delivered"
        described = await handle.describe()
    assert described.parent_id == inp.job_id
    assert {pair.key.name: pair.value for pair in described.typed_search_attributes} == {
        "DataApiCompany": "acme", "DataApiKind": "callback"}
    [deliver] = acts.of("deliver_callback")
    assert deliver.input == AttemptInput(delivery_id, inp.job_id, 1, 60.0)


async def test_callback_child_on_its_own_queue(temporal, task_queue):
    acts = Activities()
    callbacks_queue = f"{task_queue}-callbacks"
    inp = query(mode="async", callback_url="https://example.com/hook", callback_task_queue=callbacks_queue)
    async with Worker(temporal, task_queue=callbacks_queue, workflows=[CallbackWorkflow],
                      activities=[acts.deliver_callback]):
        assert await run(temporal, task_queue, acts, inp) == COMPLETED
        [child] = await child_starts(temporal, temporal.get_workflow_handle(inp.job_id), CallbackInput)
        assert child["task_queue"] == callbacks_queue
        assert await temporal.get_workflow_handle(child["workflow_id"]).result() == "delivered"
    [deliver] = acts.of("deliver_callback")
    assert deliver.info.task_queue == callbacks_queue


@pytest.mark.parametrize("changes", [{"mode": "async"}, {"mode": "sync", "callback_url": "https://example.com/h"}],
                         ids=["async-without-url", "sync"])
async def test_no_callback_child(temporal, task_queue, changes):
    acts, inp = Activities(), query(**changes)
    assert await run(temporal, task_queue, acts, inp) == COMPLETED
    assert await child_starts(temporal, temporal.get_workflow_handle(inp.job_id), CallbackInput) == []
