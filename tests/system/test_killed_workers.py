"""A worker process SIGKILLed in the middle of the work and started again: a query, a callback between its
attempts, a repository job. The API and the test's other workers run in process on the session's dev server;
the killed worker is a real ``dataapi worker`` process. Nothing is lost, nothing runs twice where it must not."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from tests.support.callbacks import callback_done, received, submit
from tests.support.data_api import Tenant, bearer, execute, wait_job
from tests.support.job_runs import host_processes
from tests.support.jobs_api import Org
from tests.support.polling import wait_until
from tests.support.processes import worker_process
from tests.support.receiver import Reply
from worker import build_callback_worker, build_job_worker, build_query_worker


@pytest.fixture
async def api_of(stack_app):
    transport = httpx.ASGITransport(app=stack_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as c:
        yield c


async def _started(path) -> bool:
    return path.exists() and path.read_text() != ""


async def _none_running(argument: str) -> bool:
    return not host_processes(argument)


async def test_worker_killed_mid_query_then_restarted_completes_the_job(stack_app, stack_settings, api_of,
                                                                         temporal_env):
    tenant = Tenant(stack_app, api_of)
    # Long enough to be caught running (a few seconds), short enough to finish on the retry.
    tenant.endpoint(slug="medio", execution_mode="async",
                    sql="SELECT count(*) AS n FROM range(60000) a, range(60000) b WHERE a.range * b.range = -1")
    token = await tenant.token()
    proc = worker_process(stack_settings)
    try:
        accepted = (await execute(api_of, token, "default/medio")).json()
        handle = temporal_env.client.get_workflow_handle(accepted["job_id"])

        async def running():
            desc = await handle.describe()
            return any(a.state == 2 for a in desc.raw_description.pending_activities)  # STARTED

        await wait_until(running, within=20)
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
        assert await wait_until(closed, within=30) == WorkflowExecutionStatus.COMPLETED


async def test_worker_killed_between_attempts_loses_nothing(cb_stack, cb_settings, temporal_env, receiver):
    app, api = cb_stack
    settings = cb_settings.model_copy(update={"callback_schedule_seconds": [0, 4]})
    app.state.ctx.settings = settings
    tenant = Tenant(app, api)
    token = await tenant.token()
    receiver.replies.extend([Reply(500), Reply(200)])
    env = {"DATAAPI_CALLBACK_ALLOW_CIDRS": '["127.0.0.0/8", "::1/128"]',
           "DATAAPI_CALLBACK_ALLOW_HOSTS": '["localhost"]',
           "DATAAPI_CALLBACK_CA_BUNDLE": settings.callback_ca_bundle}
    async with build_query_worker(temporal_env.client, settings):
        proc = worker_process(settings, queues="callbacks", extra_env=env)
        try:
            accepted = await submit(tenant, api, token, receiver.url("localhost"))
            await wait_until(lambda: received(receiver, 1), within=20)
            # Killed between the attempts: once the first attempt is recorded and the workflow waits on its timer
            # (killed while the first POST is still being recorded, the attempt is retried after its heartbeat
            # timeout and POSTed again: the same guarantee, another count of requests).
            history = temporal_env.client.get_workflow_handle(
                f"callback-{receiver.requests[0].headers['webhook-id']}")

            async def waiting_on_the_timer():
                return any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
                           for e in (await history.fetch_history()).events)

            await wait_until(waiting_on_the_timer, within=20)
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        await asyncio.sleep(5)  # past the second attempt's time: nobody was there to make it
        assert len(receiver.requests) == 1
        async with build_callback_worker(temporal_env.client, settings):
            job = await callback_done(api, token, accepted["polling_url"], within=30)
    assert job["callback"]["status"] == "delivered" and job["callback"]["attempts"] == 2
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1 and len(receiver.requests) == 2


async def test_worker_killed_mid_run_then_restarted_finishes_the_job(jobs_app, jobs_settings, temporal_env, tmp_path):
    app, api = jobs_app
    org = Org(app, api)
    tag = time.time_ns() % 10**9
    proc = worker_process(jobs_settings, queues="jobs",
                           extra_env={"DATAAPI_TASK_QUEUE_JOBS": jobs_settings.task_queue_jobs,
                                      "DATAAPI_JOB_HEARTBEAT_SECONDS": "2",
                                      "DATAAPI_PAYLOAD_KEYSET": jobs_settings.payload_keyset})
    try:
        job_id = (await org.submit(repository="lento", params={"sleep": 3, "tag": tag})).json()["job_id"]
        started = jobs_settings.var_dir / "work" / job_id / "started"
        await wait_until(lambda: _started(started), within=30)
        first_run = started.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    await wait_until(lambda: _none_running(f"3.{tag}"), within=5)  # the job's sandbox died with its worker
    r = await api.get(f"/api/v1/job/{job_id}/result", headers=org.headers(None))
    assert r.status_code == 202
    async with build_job_worker(temporal_env.client, jobs_settings):
        result = await org.finished(job_id, within=60)
    assert result.status_code == 200 and result.json()["slept"] == 3
    assert result.json()["run"] != first_run  # it really ran again
