"""``DELETE .../jobs/{job_id}`` on a running async job: the workflow is cancelled, the query activity learns of it
at its next heartbeat and interrupts DuckDB, and the job reads ``failed``, ``Cancelled by caller``. The worker
here has one query slot, so the query after the cancel runs only once DuckDB has let the slow one go."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.data_api import SLOW_SQL, Tenant, bearer, execute, wait_job
from tests.support.polling import wait_until

JOBS = "/api/v1/data-api/default/lento/jobs"


@pytest.fixture(params=["sqlite", "postgresql"])
def stack_settings(request, stack_settings):
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param])
    return stack_settings.model_copy(update={"database_url": url, "query_concurrency": 1})


# 0.3 s: the query's local attempt in the API's worker (1 s budget); 2 s: the regular activity, heartbeating.
@pytest.mark.parametrize("running_for", [0.3, 2.0])
async def test_cancel_interrupts_duckdb_and_the_job_reads_cancelled_by_caller(stack, api, temporal_env, running_for):
    tenant = Tenant(stack, api)
    tenant.endpoint(slug="lento", sql=SLOW_SQL, execution_mode="async")
    tenant.endpoint(slug="rapido", sql="SELECT 42 AS x")
    token, other = await tenant.token(), await tenant.token()
    r = await execute(api, token, "default/lento")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    await asyncio.sleep(running_for)
    r = await api.delete(f"{JOBS}/{job_id}", headers=bearer(other))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"  # not theirs

    started = time.monotonic()
    r = await api.delete(f"{JOBS}/{job_id}", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and r.json()["error"] == "Cancelled by caller"
    handle = temporal_env.client.get_workflow_handle(job_id)

    async def closed():
        return (await handle.describe()).close_time is not None

    await wait_until(closed, within=10)
    # The only query slot is free again (DuckDB stopped; the slow query alone runs for minutes).
    fast = await execute(api, token, "default/rapido")
    assert fast.status_code == 200 and fast.json()["rows"] == [{"x": 42}]
    assert time.monotonic() - started < 8  # heartbeat timeout 2 s here: the cancel arrives within ~1.6 s
    job = await wait_job(api, token, f"{JOBS}/{job_id}")
    assert job["status"] == "failed" and job["error"] == "Cancelled by caller" and job["result"] is None
    assert (await api.delete(f"{JOBS}/{job_id}", headers=bearer(token))).status_code == 204  # then deleted
    assert (await api.get(f"{JOBS}/{job_id}", headers=bearer(token))).status_code == 404
