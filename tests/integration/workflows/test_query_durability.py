"""Timeouts, cancellation from the Temporal UI and a killed worker: nothing keeps running, nothing is lost."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus

from dataapi.db import session_scope
from dataapi.models import Job
from tests.support.data_api import SLOW_SQL, Tenant, bearer, execute, wait_job
from tests.support.polling import wait_until


@pytest.fixture
async def api_of(stack_app):
    transport = httpx.ASGITransport(app=stack_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as c:
        yield c


async def _jobs(ctx, company_id: int) -> list[Job]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(Job).where(Job.company_id == company_id)).all())


async def test_sync_timeout_cancels_the_workflow_and_interrupts_duckdb(stack, api_of, temporal_env):
    ctx = stack.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"sync_timeout_seconds": 1.5})
    tenant = Tenant(stack, api_of)
    tenant.endpoint(slug="lento", sql=SLOW_SQL)
    token = await tenant.token()

    started = time.monotonic()
    r = await execute(api_of, token, "default/lento")
    elapsed = time.monotonic() - started
    assert r.status_code == 408 and r.json()["code"] == "EXECUTION_TIMEOUT", r.text
    assert 1.4 < elapsed < 5

    # The workflow is cancelled, and its job records why; the query activity has returned (interrupted).
    async def closed():
        jobs = await _jobs(ctx, tenant.company_id)
        return jobs if jobs and jobs[0].status == "failed" else None

    job = (await wait_until(closed, within=5))[0]
    assert job.error == "Execution timed out"

    async def workflow_failed():  # the response is handed off in-process; the workflow closes just after
        desc = await temporal_env.client.get_workflow_handle(job.id).describe()
        return desc.status == WorkflowExecutionStatus.FAILED

    await wait_until(workflow_failed, within=5)
    # The worker's query threads are free again: a fast query answers at once.
    tenant.endpoint(slug="rapido", sql="SELECT 42 AS x")
    r = await execute(api_of, token, "default/rapido")
    assert r.status_code == 200 and r.json()["rows"] == [{"x": 42}]


async def test_terminated_from_temporal_reads_as_failed(stack, api_of, temporal_env):
    tenant = Tenant(stack, api_of)
    tenant.endpoint(slug="lento", sql=SLOW_SQL, execution_mode="async")
    token = await tenant.token()
    accepted = (await execute(api_of, token, "default/lento")).json()
    handle = temporal_env.client.get_workflow_handle(accepted["job_id"])
    await handle.terminate(reason="operator stopped it")
    job = await wait_job(api_of, token, accepted["polling_url"], within=10)
    assert job["status"] == "failed" and "terminated" in job["error"] and job["result"] is None
    assert job["completed_at"] is not None


async def test_polling_a_running_job_asks_temporal_at_most_every_two_seconds(stack, api_of, temporal_env,
                                                                           monkeypatch):
    from temporalio.client import WorkflowHandle

    described: list[str] = []
    original = WorkflowHandle.describe

    async def spy(self, *args, **kwargs):
        described.append(self.id)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(WorkflowHandle, "describe", spy)
    tenant = Tenant(stack, api_of)
    tenant.endpoint(slug="lento", sql=SLOW_SQL, execution_mode="async")
    token = await tenant.token()
    accepted = (await execute(api_of, token, "default/lento")).json()
    started = time.monotonic()
    polls = 0
    while time.monotonic() - started < 3.5:  # a young job is not checked; a running one once per 2 s
        r = await api_of.get(accepted["polling_url"], headers=bearer(token))
        assert r.status_code == 200 and r.json()["status"] == "processing"
        polls += 1
        await asyncio.sleep(0.05)
    assert polls > 30 and 1 <= len(described) <= 2, (polls, described)
    await temporal_env.client.get_workflow_handle(accepted["job_id"]).terminate(reason="test over")
    job = await wait_job(api_of, token, accepted["polling_url"], within=10)  # still noticed, within 2 s
    assert job["status"] == "failed" and "terminated" in job["error"]


async def test_cancelled_async_job_reads_as_failed(stack, api_of, temporal_env):
    tenant = Tenant(stack, api_of)
    tenant.endpoint(slug="lento", sql=SLOW_SQL, execution_mode="async")
    token = await tenant.token()
    accepted = (await execute(api_of, token, "default/lento")).json()
    await asyncio.sleep(0.5)
    await temporal_env.client.get_workflow_handle(accepted["job_id"]).cancel()
    job = await wait_job(api_of, token, accepted["polling_url"], within=15)
    assert job["status"] == "failed" and "cancelled" in job["error"]
