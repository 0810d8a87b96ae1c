"""The sync path's fast lane and its fallback: the API's embedded query worker (started by the app's lifespan on
a lazily created client), eager start, the in-process handoff of the outcome, and the long-poll when the query
runs elsewhere. Both lanes must give the same answers."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from api.app import create_app
from dataapi.db import make_engine
from dataapi.handoff import SyncResults, sync_results
from dataapi.messages import QueryOutput
from tests.test_data_api import SLOW_SQL, Tenant, execute
from worker import build_query_worker


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


@contextlib.asynccontextmanager
async def served(app):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
            yield api


async def test_lifespan_runs_the_embedded_worker_and_sync_calls_start_eagerly(stack_settings, eager_starts,
                                                                             temporal_env):
    """No client given: the app connects its own (lazily at first), and its lifespan starts the query worker on
    a connected client. No other worker polls this task queue, so every answer comes from the embedded one."""
    engine = make_engine(stack_settings.resolved_database_url)
    app = create_app(stack_settings, engine)
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
            assert eager_starts and all(eager_starts), eager_starts
            assert sync_results._waiting == {}  # nothing left behind
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
        engine.dispose()


async def test_query_on_another_worker_answers_through_the_workflow_result(stack_settings, eager_starts,
                                                                           temporal_env):
    """A thin API (no embedded worker) and a worker on its own connection: no eager start, no handoff; the
    answers, successes and failures alike, are the same as on the fast lane."""
    settings = stack_settings.model_copy(update={"api_query_worker": False, "sync_timeout_seconds": 1.5})
    engine = make_engine(settings.resolved_database_url)
    app = create_app(settings, engine, temporal_env.client)
    other = await Client.connect(temporal_env.client.service_client.config.target_host)
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
