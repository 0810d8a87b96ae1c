"""Timeouts, cancellation from the Temporal UI and a killed worker: nothing keeps running, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus

from dataapi.db import session_scope
from dataapi.models import Job
from tests.test_data_api import SLOW_SQL, Tenant, bearer, execute, wait_job
from worker import build_query_worker


@pytest.fixture
async def api_of(stack_app):
    transport = httpx.ASGITransport(app=stack_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as c:
        yield c


async def _jobs(ctx, company_id: int) -> list[Job]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(Job).where(Job.company_id == company_id)).all())


async def _until(predicate, within: float, step: float = 0.1):
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


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

    job = (await _until(closed, within=5))[0]
    assert job.error == "Execution timed out"

    async def workflow_failed():  # the response is handed off in-process; the workflow closes just after
        desc = await temporal_env.client.get_workflow_handle(job.id).describe()
        return desc.status == WorkflowExecutionStatus.FAILED

    await _until(workflow_failed, within=5)
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


def _worker_process(settings, queues: str = "queries", extra_env: dict | None = None) -> subprocess.Popen:
    """A real worker process (so that it can be SIGKILLed) with the test's settings."""
    env = {**os.environ, "DATAAPI_VAR_DIR": str(settings.var_dir), "DATAAPI_DATABASE_URL": settings.database_url,
           "DATAAPI_TEMPORAL_ADDRESS": settings.temporal_address,
           "DATAAPI_TASK_QUEUE_QUERIES": settings.task_queue_queries,
           "DATAAPI_TASK_QUEUE_CALLBACKS": settings.task_queue_callbacks,
           "DATAAPI_QUERY_HEARTBEAT_SECONDS": str(settings.query_heartbeat_seconds),
           "DATAAPI_PAYLOAD_KEYSET": settings.payload_keyset, **(extra_env or {})}  # the same payload keys
    return subprocess.Popen([sys.executable, "-m", "dataapi.cli", "worker", "--queues", queues], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_worker_killed_mid_query_then_restarted_completes_the_job(stack_app, stack_settings, api_of,
                                                                         temporal_env):
    tenant = Tenant(stack_app, api_of)
    # Long enough to be caught running (a few seconds), short enough to finish on the retry.
    tenant.endpoint(slug="medio", execution_mode="async",
                    sql="SELECT count(*) AS n FROM range(60000) a, range(60000) b WHERE a.range * b.range = -1")
    token = await tenant.token()
    proc = _worker_process(stack_settings)
    try:
        accepted = (await execute(api_of, token, "default/medio")).json()
        handle = temporal_env.client.get_workflow_handle(accepted["job_id"])

        async def running():
            desc = await handle.describe()
            return any(a.state == 2 for a in desc.raw_description.pending_activities)  # STARTED

        await _until(running, within=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = await api_of.get(accepted["polling_url"], headers=bearer(token))
    assert r.json()["status"] == "processing"

    async def closed():  # the job row is written by the activity; the workflow closes on its next task, which
        desc = await handle.describe()  # may wait out the dead worker's sticky queue (10 s): keep a worker up
        return desc.status if desc.status != WorkflowExecutionStatus.RUNNING else None

    async with build_query_worker(temporal_env.client, stack_settings):
        job = await wait_job(api_of, token, accepted["polling_url"], within=60)
        assert job["status"] == "completed", job
        assert job["result"]["rows"] == [{"n": 0}]
        assert await _until(closed, within=30) == WorkflowExecutionStatus.COMPLETED
