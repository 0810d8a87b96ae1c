"""The sync path's fast lane and its fallback (``dataapi.sync``): the API's embedded query worker (started by the
app's lifespan on a lazily created client), eager start, the query started beside the workflow's start and
adopted by its activity, the in-process handoff of the outcome, the workflow's result when the query runs
elsewhere, and the switch that turns the lane off. Every lane must give the same answers. What the lane did is
read from its public ``stats``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.duck.databases import CompanyDatabases
from activities.duck.errors import QueryInterrupted
from activities.query import QueryActivities, RunningQuery
from api.app import create_app
from dataapi.db import make_engine, session_scope
from dataapi.messages import QueryInput, QueryOutput
from dataapi.models import Job
from dataapi.settings import Settings
from dataapi.sync import TIMED_OUT, LaneStats, SyncLane
from tests.support.data_api import SLOW_SQL, Tenant, execute, served
from worker import build_query_worker, embedded_query_worker, query_activities


@pytest.fixture
def duckdb_runs(monkeypatch) -> list[str]:
    """The SQL of every query DuckDB runs in this process."""
    runs: list[str] = []
    original = CompanyDatabases.run

    def spy(self, slug, sql, *args, **kwargs):
        runs.append(sql)
        return original(self, slug, sql, *args, **kwargs)

    monkeypatch.setattr(CompanyDatabases, "run", spy)
    return runs


@pytest.mark.parametrize("attributes", ["failures", "all"])
async def test_lifespan_runs_the_embedded_worker_and_sync_calls_take_the_fast_lane(stack_settings, temporal_env,
                                                                                   duckdb_runs, attributes):
    """No client given: the app connects its own (lazily at first), and its lifespan starts the query worker on
    a connected client. No other worker polls this task queue, so every answer comes from the embedded one.
    Served as ``dataapi api`` serves it: once the worker is built, the heap is set aside (dataapi.heap)."""
    stack_settings = stack_settings.model_copy(update={"sync_search_attributes": attributes})
    engine = make_engine(stack_settings.resolved_database_url)
    app = create_app(stack_settings, engine, settle_heap=True, query_worker=embedded_query_worker)
    gc.unfreeze()
    try:
        async with served(app) as api:
            tenant = Tenant(app, api)
            token = await tenant.token()
            for _ in range(100):  # the worker registers once the lifespan's task has connected
                client = app.state.ctx._client
                if client is not None and not client.service_client.config.lazy:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the embedded query worker never connected")
            for _ in range(3):
                r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2024-01-01"})
                assert r.status_code == 200, r.text
                assert r.json()["row_count"] > 0
            # Each query started beside its workflow's start and ran once: its local activity ran here (eager
            # start), took it over and handed the outcome to the request.
            lane = app.state.ctx.sync_lane
            assert lane.stats == LaneStats(handed_off=3, prefetched=3, adopted=3), lane.stats
            assert len(duckdb_runs) == 3, duckdb_runs
            assert lane.idle  # nothing left behind
            assert gc.get_freeze_count() > 0  # settled before the worker ran (its answers above)
            # The workflow is there for the operator, closed and completed.
            async for wf in temporal_env.client.list_workflows(
                    f"TaskQueue = '{stack_settings.task_queue_queries}'"):
                handle = temporal_env.client.get_workflow_handle(wf.id)
                for _ in range(50):
                    if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"workflow {wf.id} did not complete")
            # Search attributes, set as the query ends, let the operator filter the failures, and with "all" the
            # completed executions too (DATAAPI_SYNC_SEARCH_ATTRIBUTES, docs/operations.md).
            tenant.endpoint(slug="quebrado", sql="SELECT * FROM tabela_que_nao_existe")
            assert (await execute(api, token, "default/quebrado", {})).status_code == 500

            async def filtered(endpoint: str) -> list[str]:
                return [wf.id async for wf in temporal_env.client.list_workflows(
                    f"DataApiCompany = '{tenant.slug}' AND DataApiKind = 'query' AND DataApiMode = 'sync' "
                    f"AND DataApiEndpoint = '{endpoint}'")]

            expected = {"default/quebrado": 1, "default/vendas-por-regiao": 3 if attributes == "all" else 0}
            for _ in range(50):  # visibility follows the history within moments
                found = {endpoint: len(await filtered(endpoint)) for endpoint in expected}
                if found == expected:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"sync executions found by their attributes: {found}, expected {expected}")
    finally:
        gc.unfreeze()
        engine.dispose()


async def test_query_on_another_worker_answers_through_the_workflow_result(stack_settings, temporal_env):
    """A thin API (no embedded worker) and a worker on its own connection: no eager start, no handoff; the
    answers, successes and failures alike, are the same as on the fast lane."""
    settings = stack_settings.model_copy(update={"api_query_worker": False, "sync_timeout_seconds": 1.5})
    engine = make_engine(settings.resolved_database_url)
    app = create_app(settings, engine, temporal_env.client)
    other = await Client.connect(temporal_env.client.service_client.config.target_host,  # same payload keys
                                 data_converter=temporal_env.client.data_converter)
    try:
        async with served(app) as api, build_query_worker(other, settings):
            tenant = Tenant(app, api)
            tenant.endpoint(slug="lento", sql=SLOW_SQL)
            tenant.endpoint(slug="quebrado", sql="SELECT * FROM tabela_que_nao_existe")
            token = await tenant.token()
            r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2024-01-01"})
            assert r.status_code == 200, r.text
            assert r.json()["row_count"] > 0 and r.json()["executed_at"].endswith("Z")
            r = await execute(api, token, "default/quebrado")
            assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR", r.text
            r = await execute(api, token, "default/lento")
            assert r.status_code == 408 and r.json()["code"] == "EXECUTION_TIMEOUT", r.text
            lane = app.state.ctx.sync_lane  # served by no worker: not used
            assert lane.stats == LaneStats(fell_back=3) and lane.idle, lane.stats
    finally:
        engine.dispose()


async def test_failures_on_the_fast_lane_read_the_same(stack):
    """The in-test worker shares the app's client: eager start and handoff. Errors map as on the slow lane."""
    ctx = stack.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"sync_timeout_seconds": 1.5})
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        tenant = Tenant(stack, api)
        tenant.endpoint(slug="lento", sql=SLOW_SQL)
        tenant.endpoint(slug="quebrado", sql="SELECT * FROM tabela_que_nao_existe")
        token = await tenant.token()
        r = await execute(api, token, "default/quebrado")
        assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR", r.text
        r = await execute(api, token, "default/lento")
        assert r.status_code == 408 and r.json()["code"] == "EXECUTION_TIMEOUT", r.text
    lane = ctx.sync_lane
    assert lane.stats == LaneStats(handed_off=2, prefetched=2, adopted=2) and lane.idle, lane.stats


async def test_started_query_not_taken_over_is_stopped(stack_settings, stack_app, temporal_env, duckdb_runs):
    """The API starts its queries through a worker's activities, but the workflow task is not handed back
    eagerly (that worker is on another connection): the query started here is stopped at once, the one of the
    worker that got the workflow task answers, and nothing is left behind."""
    settings = stack_settings.model_copy(update={"sync_timeout_seconds": 1.5})
    stack_app.state.ctx.settings = settings
    other = await Client.connect(temporal_env.client.service_client.config.target_host,  # same payload keys
                                 data_converter=temporal_env.client.data_converter)
    lane = stack_app.state.ctx.sync_lane
    acts = query_activities(settings, lane)
    stopped: list[QueryInput] = []
    original_stop = RunningQuery.stop

    def spy_stop(self):
        if self.owner is acts:  # not the other worker's own queries (it stops the slow one at the deadline)
            stopped.append(self.inp)
        original_stop(self)

    with pytest.MonkeyPatch.context() as mp, lane.serving(acts.start_query):
        mp.setattr(RunningQuery, "stop", spy_stop)
        transport = httpx.ASGITransport(app=stack_app, raise_app_exceptions=False)
        async with build_query_worker(other, settings), \
                httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
            tenant = Tenant(stack_app, api)
            tenant.endpoint(slug="lento", sql=SLOW_SQL)
            token = await tenant.token()
            duckdb_runs.clear()
            r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2024-01-01"})
            assert r.status_code == 200 and r.json()["row_count"] > 0, r.text
            started = time.monotonic()
            r = await execute(api, token, "default/lento")
            assert r.status_code == 408, r.text
            assert time.monotonic() - started < 5  # the worker's query was interrupted at the deadline
    assert [i.sql for i in stopped] == [duckdb_runs[0], SLOW_SQL], stopped
    # Nobody reported running here (the other worker reports to no lane): both answers came through Temporal.
    assert lane.stats == LaneStats(fell_back=2, prefetched=2, stopped=2) and lane.idle, lane.stats


_SELECT_1 = QueryInput(job_id="0" * 24, company_id=1, company_slug="nobody", endpoint_id=1, endpoint="a/b",
                       sql="SELECT 1 AS one", param_specs=[], params={}, max_rows=10, mode="sync",
                       timeout_seconds=5)


async def test_a_query_stopped_before_duckdb_started_does_not_run(tmp_path, stack_settings):
    """Stopped while it still waits for an executor thread: when it gets one, it is interrupted at once."""
    settings = stack_settings.model_copy(update={"var_dir": tmp_path / "var"})
    acts = query_activities(settings)
    gate = threading.Event()
    acts.executor = ThreadPoolExecutor(max_workers=1)
    acts.executor.submit(gate.wait)  # the only thread is busy
    query = acts.start_query(_SELECT_1)
    query.stop()
    gate.set()
    with pytest.raises(QueryInterrupted):
        await asyncio.wait_for(query.future, 10)
    running = acts.start_query(_SELECT_1)  # not stopped: it runs
    assert (await asyncio.wait_for(running.future, 10)).row_count == 1
    acts.executor.shutdown()


# --- the lane alone: a stand-in for the started workflow, the lane's public behaviour ---------------------------

class _Workflow:
    """A started workflow as the lane sees it: its result after ``delay`` (or never), and cancels recorded."""

    def __init__(self, result: QueryOutput | BaseException | None = None, delay: float = 0.0):
        self.outcome, self.delay = result, delay
        self.reads = 0
        self.cancelled = False

    async def result(self):
        self.reads += 1
        await asyncio.sleep(self.delay if self.outcome is not None else 3600)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    async def cancel(self):
        self.cancelled = True


class _Started:
    def __init__(self, inp: QueryInput):
        self.inp, self.stopped = inp, False

    def stop(self):
        self.stopped = True


def _call(job_id: str) -> QueryInput:
    return dataclasses.replace(_SELECT_1, job_id=job_id)


def _starting(workflow: _Workflow, activity=None):
    """``start`` for ``SyncLane.execute``; ``activity``: what the query activity of this process does then."""
    async def start():
        if activity is not None:
            asyncio.ensure_future(activity())
        return workflow

    return start


@pytest.fixture
def started() -> dict[str, _Started]:
    return {}


def _serving(lane: SyncLane, started: dict[str, _Started]):
    return lane.serving(lambda inp: started.setdefault(inp.job_id, _Started(inp)))


async def test_lane_hands_the_adopted_query_s_outcome_to_the_call(started):
    lane = SyncLane()
    taken = []

    async def activity():  # the local activity, run here a moment after the start (eager start)
        await asyncio.sleep(0.01)
        taken.append(lane.adopt("a"))
        lane.publish("a", QueryOutput(status="completed", row_count=3), b'{"rows":[]}')

    workflow = _Workflow(QueryOutput(status="completed"), delay=5)
    with _serving(lane, started):
        assert lane.active
        answer = await lane.execute(_call("a"), _starting(workflow, activity), time.time() + 10)
    assert (answer.outcome.row_count, answer.document) == (3, b'{"rows":[]}')
    assert taken == [started["a"]] and not started["a"].stopped  # the query started for it, taken over
    assert workflow.reads == 0  # no read of the workflow's result
    assert lane.stats == LaneStats(handed_off=1, prefetched=1, adopted=1) and lane.idle


async def test_lane_hands_a_started_query_over_once(started):
    lane = SyncLane()

    async def activity():
        first, second = lane.adopt("a"), lane.adopt("a")  # a second attempt of the activity, say
        assert first is started["a"] and second is None
        await asyncio.to_thread(lane.publish, "a", QueryOutput(status="completed", row_count=7))  # any thread

    with _serving(lane, started):
        answer = await lane.execute(_call("a"), _starting(_Workflow(), activity), time.time() + 10)
    assert answer.outcome.row_count == 7 and answer.document is None
    assert lane.adopt("unknown") is None
    lane.publish("a", QueryOutput(status="failed"))  # a second outcome, nobody waits: ignored
    assert lane.stats.handed_off == 1 and lane.idle


async def test_lane_reads_the_workflow_result_when_the_query_runs_elsewhere(started):
    """Nobody here reports running the query (another worker took the workflow task): the query started here is
    stopped and the answer is the workflow's result."""
    lane = SyncLane(adoption_window=0.05)
    workflow = _Workflow(QueryOutput(status="completed", row_count=5), delay=0.2)
    with _serving(lane, started):
        answer = await lane.execute(_call("b"), _starting(workflow), time.time() + 10)
    assert answer.outcome.row_count == 5 and answer.document is None
    assert started["b"].stopped and workflow.reads == 1
    assert lane.stats == LaneStats(fell_back=1, prefetched=1, stopped=1) and lane.idle


async def test_a_late_report_still_answers_from_here(started):
    """The activity reports after the window: the query started for it was stopped, so it runs its own, and
    its handoff still answers before the workflow's result would."""
    lane = SyncLane(adoption_window=0.02)
    taken = []

    async def activity():
        await asyncio.sleep(0.1)
        taken.append(lane.adopt("c"))
        lane.publish("c", QueryOutput(status="completed", row_count=2))

    with _serving(lane, started):
        answer = await lane.execute(_call("c"), _starting(_Workflow(), activity), time.time() + 10)
    assert answer.outcome.row_count == 2 and taken == [None] and started["c"].stopped
    assert lane.stats == LaneStats(handed_off=1, prefetched=1, adopted=1, stopped=1) and lane.idle


async def test_lane_switched_off_waits_for_the_workflow_result(started):
    lane = SyncLane(enabled=False)
    workflow = _Workflow(QueryOutput(status="completed", row_count=4))

    async def activity():  # the embedded worker's activity runs here, but the lane takes nothing
        assert lane.adopt("d") is None
        lane.publish("d", QueryOutput(status="completed", row_count=99))

    with _serving(lane, started):
        assert not lane.active
        answer = await lane.execute(_call("d"), _starting(workflow, activity), time.time() + 10)
    assert answer.outcome.row_count == 4 and started == {} and workflow.reads == 1
    assert lane.stats == LaneStats(fell_back=1) and lane.idle


async def test_lane_served_by_no_worker_waits_for_the_workflow_result(started):
    lane = SyncLane()
    assert not lane.active
    answer = await lane.execute(_call("e"), _starting(_Workflow(QueryOutput(status="completed"))), time.time() + 5)
    assert answer.outcome.status == "completed" and lane.stats == LaneStats(fell_back=1)


async def test_lane_past_the_deadline_cancels_the_workflow(started):
    lane = SyncLane(adoption_window=0.01)
    for serve in (False, True):
        workflow = _Workflow()  # never finishes
        with _serving(lane, started) if serve else contextlib.nullcontext():
            answer = await lane.execute(_call(f"f{serve}"), _starting(workflow), time.time() + 0.1)
        assert answer.outcome == TIMED_OUT and workflow.cancelled
    assert started["fTrue"].stopped and lane.idle


async def test_lane_reads_a_failed_workflow_as_a_failed_outcome():
    lane = SyncLane()
    failure = WorkflowFailureError(cause=ApplicationError("Query execution failed", type="ExecutionError"))
    answer = await lane.execute(_call("g"), _starting(_Workflow(failure)), time.time() + 5)
    assert (answer.outcome.status, answer.outcome.error_type, answer.outcome.error) == (
        "failed", "ExecutionError", "Query execution failed")


async def test_a_start_that_fails_leaves_nothing_behind(started):
    lane = SyncLane()

    async def refused():
        raise RuntimeError("Temporal is unreachable")

    with _serving(lane, started), pytest.raises(RuntimeError):
        await lane.execute(_call("h"), refused, time.time() + 5)
    assert started["h"].stopped and lane.idle


def test_the_switch_is_a_setting(settings, engine, monkeypatch):
    assert create_app(settings, engine).state.ctx.sync_lane.enabled
    monkeypatch.setenv("DATAAPI_SYNC_FAST_LANE", "false")
    off = Settings(var_dir=settings.var_dir, database_url=settings.database_url)
    assert not off.sync_fast_lane and not create_app(off, engine).state.ctx.sync_lane.enabled


async def test_switched_off_the_embedded_worker_still_answers(stack, duckdb_runs):
    """The API's worker runs, the lane is off: the query runs once, in the workflow's activity, and the answer
    comes through Temporal."""
    lane = stack.state.ctx.sync_lane
    lane.enabled = False
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        tenant = Tenant(stack, api)
        r = await execute(api, await tenant.token(), "default/vendas-por-regiao", {"data_inicio": "2024-01-01"})
    assert r.status_code == 200 and r.json()["row_count"] > 0, r.text
    assert len(duckdb_runs) == 1 and lane.stats == LaneStats(fell_back=1) and lane.idle, lane.stats


async def test_duckdb_queries_wait_for_a_slot(tmp_path, stack_settings, monkeypatch):
    """However they were started, at most ``query_concurrency`` queries of a process run in DuckDB at once."""
    settings = stack_settings.model_copy(update={"var_dir": tmp_path / "var", "query_concurrency": 2})
    acts = query_activities(settings)
    running, most = 0, 0
    lock = threading.Lock()
    original = CompanyDatabases.run

    def counted(self, *args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)
            return original(self, *args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(CompanyDatabases, "run", counted)
    queries = [acts.start_query(_SELECT_1) for _ in range(6)]
    results = await asyncio.wait_for(asyncio.gather(*(q.future for q in queries)), 30)
    assert [r.row_count for r in results] == [1] * 6 and most == 2


async def test_a_sync_query_that_cannot_store_is_recorded_failed(stack, monkeypatch):
    """The local activity raises on every attempt (the artifact store is down): the caller gets the contract's
    500, and the job is recorded as failed rather than left without a row."""
    def unreachable(self, *args):
        raise OSError("the artifact store is unreachable")

    monkeypatch.setattr(QueryActivities, "_store", unreachable)
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        tenant = Tenant(stack, api)
        r = await execute(api, await tenant.token(), "default/vendas-por-regiao", {"data_inicio": "2024-01-01"})
    assert r.status_code == 500 and r.json()["code"] == "INTERNAL_ERROR", r.text
    with session_scope(stack.state.ctx.engine) as s:
        [job] = s.exec(select(Job).where(Job.company_id == tenant.company_id)).all()
    assert (job.status, job.error) == ("failed", "Internal error during query execution")
