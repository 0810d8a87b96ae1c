"""The caller's jobs of an endpoint (list, cancel, delete), ``Prefer: respond-async`` and ``Idempotency-Key`` on
the Data API, on the real stack (Temporal dev server, the query worker, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlmodel import select

from dataapi.db import session_scope
from dataapi.models import Job
from tests.support.data_api import Tenant, bearer, execute, wait_job

JOBS = "/api/v1/data-api/default/lento/jobs"


@pytest.fixture(params=["sqlite", "postgresql"])
def stack_settings(request, stack_settings):
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param])
    return stack_settings.model_copy(update={"database_url": url})


async def _submit(api, token, endpoint="default/lento", **headers):
    r = await api.post(f"/api/v1/data-api/{endpoint}/execute", json={}, headers={**bearer(token), **headers})
    assert r.status_code in (200, 202), r.text
    return r


async def test_list_is_the_callers_own_newest_first_filtered_and_paged(stack, api):
    tenant = Tenant(stack, api)
    tenant.endpoint(slug="lento", sql="SELECT 1 AS x", execution_mode="async")
    token, other = await tenant.token(), await tenant.token()
    ids = [(await _submit(api, token)).json()["job_id"] for _ in range(5)]
    for job_id in ids:
        await wait_job(api, token, f"{JOBS}/{job_id}")
    await _submit(api, other)  # another user's job is not listed

    seen, cursor = [], None
    while True:
        r = await api.get(JOBS, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=bearer(token))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    first = (await api.get(JOBS, headers=bearer(token))).json()["jobs"][0]
    assert first["status"] == "completed" and first["polling_url"] == f"{JOBS}/{ids[-1]}"

    assert (await api.get(JOBS, params={"status": "failed"}, headers=bearer(token))).json()["jobs"] == []
    later = (await api.get(JOBS, params={"from": "2999-01-01"}, headers=bearer(token))).json()
    assert later == {"jobs": [], "next_cursor": None}
    earlier = (await api.get(JOBS, params={"to": "2000-01-01T00:00:00Z"}, headers=bearer(token))).json()
    assert earlier["jobs"] == []

    # Another company's caller sees nothing of it: its own endpoint of that name has no jobs of this caller.
    stranger = Tenant(stack, api)
    stranger.endpoint(slug="lento", sql="SELECT 1 AS x", execution_mode="async")
    assert (await api.get(JOBS, headers=bearer(await stranger.token()))).json()["jobs"] == []


@pytest.mark.parametrize("query", [{"status": "done"}, {"from": "yesterday"}, {"limit": "0"}, {"limit": "201"},
                                   {"cursor": "bm90LWEtY3Vyc29y"}, {"sort": "asc"},
                                   {"from": "2026-02-01", "to": "2026-01-01"}])
async def test_bad_filters_are_400_in_the_contracts_shape(stack, api, query):
    tenant = Tenant(stack, api)
    tenant.endpoint(slug="lento", sql="SELECT 1 AS x", execution_mode="async")
    r = await api.get(JOBS, params=query, headers=bearer(await tenant.token()))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMS" and r.json()["message"], r.text


async def test_deleting_a_finished_job_removes_its_result(stack, api):
    tenant = Tenant(stack, api)
    tenant.endpoint(slug="lento", sql="SELECT 1 AS x", execution_mode="async")
    token = await tenant.token()
    job_id = (await _submit(api, token)).json()["job_id"]
    await wait_job(api, token, f"{JOBS}/{job_id}")
    with session_scope(stack.state.ctx.engine) as s:
        key = s.get(Job, job_id).result_key
    assert stack.state.ctx.artifacts.exists(key)
    assert (await api.delete(f"{JOBS}/{job_id}", headers=bearer(token))).status_code == 204
    assert not stack.state.ctx.artifacts.exists(key)
    r = await api.get(f"{JOBS}/{job_id}", headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"
    assert (await api.delete(f"{JOBS}/{job_id}", headers=bearer(token))).status_code == 404
    assert (await api.get(JOBS, headers=bearer(token))).json()["jobs"] == []


@pytest.mark.slow
async def test_prefer_respond_async_answers_202_then_the_job_completes(stack, api):
    ctx = stack.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"sync_timeout_seconds": 1.5})
    tenant = Tenant(stack, api)
    # Over the 1.5 s sync limit, well within the async one.
    slow = "SELECT count(*) AS n FROM range(30000) a, range(30000) b WHERE a.range * b.range = -1"
    tenant.endpoint(slug="lento", sql=slow)
    token = await tenant.token()
    assert (await execute(api, token, "default/lento")).status_code == 408  # without the header: unchanged

    started = time.monotonic()
    r = await api.post("/api/v1/data-api/default/lento/execute", json={},
                       headers={**bearer(token), "Prefer": "respond-async, wait=1"})
    assert r.status_code == 202 and r.headers["preference-applied"] == "respond-async", r.text
    assert 0.9 < time.monotonic() - started < 3
    body = r.json()
    assert body["status"] == "processing" and body["polling_url"] == f"{JOBS}/{body['job_id']}"
    job = await wait_job(api, token, body["polling_url"], within=60)
    assert job["status"] == "completed" and job["result"]["rows"] == [{"n": 0}], job

    fast = await api.post("/api/v1/data-api/default/vendas-por-regiao/execute",
                          json={"parameter_values": {"data_inicio": "2026-01-01"}},
                          headers={**bearer(token), "Prefer": "respond-async, wait=30"})
    assert fast.status_code == 200 and fast.headers["preference-applied"] == "wait=1.5", fast.text
    assert fast.json()["rows"] and "max_rows" in fast.json()
    csv = await api.post("/api/v1/data-api/default/vendas-por-regiao/execute",
                         json={"parameter_values": {"data_inicio": "2026-01-01"}},
                         headers={**bearer(token), "Prefer": "respond-async, wait=30", "Accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv"), csv.text
    assert csv.headers["preference-applied"] == "wait=1.5" and csv.text.splitlines()[0] == "\"regiao\",\"total\""


async def test_idempotency_key_same_body_same_job_other_body_422(stack, api):
    tenant = Tenant(stack, api)
    tenant.endpoint(slug="lento", sql="SELECT $x AS x", execution_mode="async",
                    parameters=[{"name": "x", "type": "integer"}])
    token, other = await tenant.token(), await tenant.token()
    url = "/api/v1/data-api/default/lento/execute"

    async def post(body, key="k-1", who=token):
        return await api.post(url, json=body, headers={**bearer(who), "Idempotency-Key": key})

    # Concurrent duplicates: one job, every answer the same.
    answers = await asyncio.gather(*(post({"parameter_values": {"x": 1}}) for _ in range(4)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["job_id"] for a in answers}) == 1
    job_id = answers[0].json()["job_id"]
    assert (await post({"parameter_values": {"x": 1}})).json()["job_id"] == job_id
    reused = await post({"parameter_values": {"x": 2}})
    assert reused.status_code == 422 and reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED", reused.text
    assert (await post({"parameter_values": {"x": 1}}, who=other)).json()["job_id"] != job_id  # per user
    assert (await post({}, key="bad key")).status_code == 400
    with session_scope(stack.state.ctx.engine) as s:
        rows = s.exec(select(Job).where(Job.company_id == tenant.company_id, Job.user_id != None)).all()  # noqa: E711
    assert len([r for r in rows if r.idempotency_key == "k-1"]) == 2  # one per user

    # A sync endpoint: the repeated request gets the same answer, read from the same job.
    sync_url = "/api/v1/data-api/default/vendas-por-regiao/execute"
    body = {"parameter_values": {"data_inicio": "2026-01-01"}}
    first = await api.post(sync_url, json=body, headers={**bearer(token), "Idempotency-Key": "s-1"})
    again = await api.post(sync_url, json=body, headers={**bearer(token), "Idempotency-Key": "s-1"})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["rows"] == again.json()["rows"] and first.json()["executed_at"] == again.json()["executed_at"]
    other_body = await api.post(sync_url, json={"parameter_values": {"data_inicio": "2026-02-01"}},
                                headers={**bearer(token), "Idempotency-Key": "s-1"})
    assert other_body.status_code == 422


async def test_concurrent_keyed_sync_requests_share_one_execution(stack, api):
    tenant = Tenant(stack, api)
    token = await tenant.token()
    url = "/api/v1/data-api/default/vendas-por-regiao/execute"
    body = {"parameter_values": {"data_inicio": "2026-01-01"}}
    answers = await asyncio.gather(*(api.post(url, json=body, headers={**bearer(token), "Idempotency-Key": "c-1"})
                                     for _ in range(4)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["executed_at"] for a in answers}) == 1 and len({a.content for a in answers}) == 1
    with session_scope(stack.state.ctx.engine) as s:
        rows = s.exec(select(Job).where(Job.company_id == tenant.company_id)).all()
    assert [(r.status, r.idempotency_key) for r in rows] == [("completed", "c-1")]
