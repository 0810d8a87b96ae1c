"""Async executions try a local activity first (where their workflow task runs, with eager start the API's
query worker), within ``async_local_budget_seconds``; a query that outruns it, or an attempt that fails for a
reason other than the query, goes on as a regular activity on the worker processes. The answers are the same
on every path; the history shows which one ran."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError

from activities.query import QueryActivities
from tests.support.data_api import SECOND_OF_WORK, Tenant, bearer, execute, wait_job

MARKER = EventType.EVENT_TYPE_MARKER_RECORDED  # a local activity
SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED  # a regular one


@pytest.fixture
async def tenant(stack):
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as api:
        yield Tenant(stack, api)


@pytest.fixture
def budget(stack):
    """Sets the local attempt's budget of the executions submitted from here on."""
    ctx = stack.state.ctx

    def set_budget(seconds: float) -> None:
        ctx.settings = ctx.settings.model_copy(update={"async_local_budget_seconds": seconds})

    return set_budget


async def run_async(tenant: Tenant, temporal_env, slug: str, params=None) -> tuple[dict, list[int]]:
    token = await tenant.token()
    r = await execute(tenant.client, token, f"default/{slug}", params)
    assert r.status_code == 202, r.text
    job = await wait_job(tenant.client, token, r.json()["polling_url"])
    handle = temporal_env.client.get_workflow_handle(r.json()["job_id"])
    with contextlib.suppress(WorkflowFailureError):  # a failed job's workflow shows the failure too
        await handle.result()
    events = [e.event_type for e in (await handle.fetch_history()).events]
    r = await tenant.client.get(r.json()["polling_url"], headers=bearer(token))
    assert r.json() == job  # nothing changed after the job read completed (or failed)
    return job, events


async def test_a_short_async_query_runs_as_a_local_activity(tenant, temporal_env):
    job, events = await run_async(tenant, temporal_env, "relatorio-mensal", {"mes": "2026-03"})
    assert job["status"] == "completed" and job["result"]["row_count"] > 0, job
    assert MARKER in events and SCHEDULED not in events


async def test_a_query_outrunning_the_budget_goes_on_as_a_regular_activity(tenant, temporal_env, budget):
    budget(0.2)
    tenant.endpoint(slug="segundo", sql=SECOND_OF_WORK, execution_mode="async")
    job, events = await run_async(tenant, temporal_env, "segundo")
    assert job["status"] == "completed" and job["error"] is None, job
    assert job["result"]["rows"] == [{"n": 0}]
    assert events.index(MARKER) < events.index(SCHEDULED)  # stopped locally (recording nothing), then run


async def test_without_a_budget_async_queries_are_regular_activities(tenant, temporal_env, budget):
    budget(0)
    job, events = await run_async(tenant, temporal_env, "relatorio-mensal", {"mes": "2026-03"})
    assert job["status"] == "completed" and job["result"]["row_count"] > 0, job
    assert MARKER not in events and SCHEDULED in events


async def test_a_local_attempt_that_cannot_store_leaves_the_job_to_the_regular_activity(tenant, temporal_env,
                                                                                         monkeypatch):
    calls = []
    store = QueryActivities._store

    def failing_once(self, *args):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the artifact store is unreachable")
        return store(self, *args)

    monkeypatch.setattr(QueryActivities, "_store", failing_once)
    job, events = await run_async(tenant, temporal_env, "relatorio-mensal", {"mes": "2026-03"})
    assert job["status"] == "completed" and job["result"]["row_count"] > 0, job
    assert len(calls) == 2 and events.index(MARKER) < events.index(SCHEDULED)


async def test_a_failing_query_fails_in_the_local_attempt(tenant, temporal_env):
    tenant.endpoint(slug="quebrado", sql="SELECT * FROM tabela_que_nao_existe", execution_mode="async")
    job, events = await run_async(tenant, temporal_env, "quebrado")
    assert job["status"] == "failed", job
    assert job["error"].startswith("Catalog Error: Table with name tabela_que_nao_existe does not exist"), job
    assert MARKER in events and SCHEDULED not in events  # no second run: the query itself failed
