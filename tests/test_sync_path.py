"""The sync path's fast lane and its fallback: the API's embedded query worker (started by the app's lifespan on
a lazily created client), eager start, the in-process handoff of the outcome, and the long-poll when the query
runs elsewhere. Both lanes must give the same answers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus

from activities.duck import CompanyDatabases, QueryInterrupted
from activities.query import QueryActivities, RunningQuery
from api.app import create_app
from dataapi.db import make_engine, session_scope
from dataapi.handoff import SyncResults, sync_results
from dataapi.messages import QueryInput, QueryOutput
from dataapi.models import Job
from tests.test_data_api import SLOW_SQL, Tenant, execute
from worker import build_query_worker, query_activities


@pytest.fixture
def eager_starts(monkeypatch) -> list[bool]:
    """Records, for every workflow start, whether Temporal handed the first workflow task back eagerly."""
    seen: list[bool] = []
    original = Client.start_workflow

    async def spy(self, *args, **kwargs):
        handle = await original(self, *args, **kwargs)
        seen.append(bool(getattr(handle, "__temporal_eagerly_started", False)))
        return handle

    monkeypatch.setattr(Client, "start_workflow", spy)
    return seen


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


@pytest.fixture
def adopted(monkeypatch) -> list[bool]:
    """For every sync query activity of this process: whether it took over a query the request had started."""
    seen: list[bool] = []
    original = SyncResults.adopt

    def spy(self, job_id):
        started = original(self, job_id)
        seen.append(started is not None)
        return started

    monkeypatch.setattr(SyncResults, "adopt", spy)
    return seen


@contextlib.asynccontextmanager
async def served(app):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
            yield api


async def test_lifespan_runs_the_embedded_worker_and_sync_calls_start_eagerly(stack_settings, eager_starts,
                                                                             temporal_env, duckdb_runs, adopted):
    """No client given: the app connects its own (lazily at first), and its lifespan starts the query worker on
    a connected client. No other worker polls this task queue, so every answer comes from the embedded one.
    Served as ``dataapi api`` serves it: once the worker is built, the heap is set aside (dataapi.heap)."""
    engine = make_engine(stack_settings.resolved_database_url)
    app = create_app(stack_settings, engine, settle_heap=True)
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
            # Each query started beside its workflow's start and ran once: the local activity took it over.
            assert adopted == [True] * 3 and len(duckdb_runs) == 3, (adopted, duckdb_runs)
            assert eager_starts and all(eager_starts), eager_starts
            assert sync_results._waiting == {} and sync_results._started == {}  # nothing left behind
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
    finally:
        gc.unfreeze()
        engine.dispose()


async def test_query_on_another_worker_answers_through_the_workflow_result(stack_settings, eager_starts,
                                                                           temporal_env):
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
            assert eager_starts == [False, False, False]
            assert sync_results._waiting == {}
    finally:
        engine.dispose()


async def test_failures_on_the_fast_lane_read_the_same(stack, eager_starts):
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
    assert eager_starts == [True, True]
    assert sync_results._waiting == {}


async def test_started_query_not_taken_over_is_stopped(stack_settings, stack_app, temporal_env, duckdb_runs,
                                                        adopted):
    """The API starts its queries through a worker's activities, but the workflow task is not handed back
    eagerly (that worker is on another connection): the query started here is stopped at once, the one of the
    worker that got the workflow task answers, and nothing is left behind."""
    settings = stack_settings.model_copy(update={"sync_timeout_seconds": 1.5})
    stack_app.state.ctx.settings = settings
    other = await Client.connect(temporal_env.client.service_client.config.target_host,  # same payload keys
                                 data_converter=temporal_env.client.data_converter)
    acts = query_activities(settings)
    stopped: list[QueryInput] = []
    original_stop = RunningQuery.stop

    def spy_stop(self):
        if self.owner is acts:  # not the other worker's own queries (it stops the slow one at the deadline)
            stopped.append(self.inp)
        original_stop(self)

    with pytest.MonkeyPatch.context() as mp, sync_results.prefetching(acts.start_query):
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
    assert adopted == [False, False]  # the other worker's activities found nothing to take over
    assert sync_results._waiting == {} and sync_results._started == {}


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


async def test_handoff_registry():
    results = SyncResults()
    waiting = results.expect("a")
    results.publish("b", QueryOutput(status="completed"))  # nobody waits for b: ignored
    results.publish("a", QueryOutput(status="completed", row_count=3))
    assert (await waiting).outcome.row_count == 3
    results.publish("a", QueryOutput(status="failed"))  # a second outcome for a finished wait: ignored
    cancelled = results.expect("c")
    results.discard("c")
    assert cancelled.cancelled() and results._waiting == {}

    threaded = results.expect("d")  # published from another thread: delivered on the waiting loop
    await asyncio.to_thread(results.publish, "d", QueryOutput(status="completed", row_count=7))
    assert (await asyncio.wait_for(threaded, 5)).outcome.row_count == 7

    class Started:
        stopped = False

        def stop(self):
            self.stopped = True

    started: dict[str, Started] = {}
    results.expect("e", _SELECT_1)  # nothing registered to start queries: nothing started
    assert results.adopt("e") is None
    with results.prefetching(lambda inp: started.setdefault(inp.job_id, Started())):
        results.expect("f", _SELECT_1)
    results.expect("g", _SELECT_1)  # the worker stopped: no longer started
    assert list(started) == [_SELECT_1.job_id] and results.adopt("g") is None
    assert results.adopt("f") is started[_SELECT_1.job_id] and results.adopt("f") is None  # handed over once
    with results.prefetching(lambda inp: Started()):
        results.expect("h", _SELECT_1)
        kept = results._started["h"]
        results.discard("h")  # the request is over: a query not taken over is stopped
    assert kept.stopped and results._started == {} and not started[_SELECT_1.job_id].stopped


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
