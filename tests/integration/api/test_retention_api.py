"""Retention as callers see it, on the whole stack (SQLite with the local store, PostgreSQL with S3): a finished job's
body says when it expires; past that its routes answer 410 ``RESULT_EXPIRED`` (before and after the prune removed
its files), and once the prune removed its tombstone, 404 as a job that never existed. Both APIs.

Time passes by moving the job's end (and then its tombstone's mark) back in the store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dataapi import retention
from dataapi.db import session_scope
from dataapi.models import Job, RepoJob, as_utc
from dataapi.settings import Settings
from dataapi.storage.factory import store_from_settings
from tests.support.data_api import ON_EACH_STORE, bearer, execute, settings_on_store, wait_job
from tests.support.jobs_api import CSV

RETENTION, TOMBSTONE = 7 * 86_400.0, 30 * 86_400.0


@pytest.fixture(**ON_EACH_STORE)
def stack_settings(request, tmp_path, temporal_env, payload_keyset, monkeypatch) -> Settings:
    return settings_on_store(request, tmp_path, temporal_env, payload_keyset, monkeypatch, query_heartbeat_seconds=2.0,
                             result_retention_seconds=RETENTION, tombstone_retention_seconds=TOMBSTONE)


def _move_back(engine, model, job_id: str, field: str, seconds: float) -> None:
    with session_scope(engine) as s:
        row = s.get(model, job_id)
        setattr(row, field, as_utc(getattr(row, field)) - timedelta(seconds=seconds))
        s.add(row)


def _prune(settings: Settings, engine) -> retention.PruneCounts:
    policy = retention.Policy.of(settings.result_retention_seconds, settings.tombstone_retention_seconds, 100)
    return retention.prune(engine, store_from_settings(settings), policy)


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_data_api_job_expires_then_vanishes(tenant, api, stack_settings):
    tenant.endpoint(slug="expira", sql="SELECT 42 AS n", execution_mode="async")
    token = await tenant.token()
    r = await execute(api, token, "default/expira")
    assert r.status_code == 202, r.text
    url = r.json()["polling_url"]
    job = await wait_job(api, token, url)
    assert job["status"] == "completed" and job["result"]["rows"] == [{"n": 42}]
    assert _stamp(job["expires_at"]) - _stamp(job["completed_at"]) == timedelta(days=7)
    engine, store = tenant.ctx.engine, store_from_settings(stack_settings)
    with session_scope(engine) as s:
        keys = [k for k in (s.get(Job, job["job_id"]).result_key, s.get(Job, job["job_id"]).rows_key) if k]
    assert keys and all(store.exists(k) for k in keys)

    _move_back(engine, Job, job["job_id"], "completed_at", RETENTION + 60)
    for answer in (await api.get(url, headers=bearer(token)), await api.get(url + "/result", headers=bearer(token)),
                   await api.post(url + "/callback/redeliver", headers=bearer(token))):
        assert answer.status_code == 410, answer.text  # due, not yet pruned: the result is no longer served
        assert answer.json()["code"] == "RESULT_EXPIRED" and "expired at" in answer.json()["message"]

    assert _prune(stack_settings, engine).data_jobs_expired >= 1
    assert not any(store.exists(k) for k in keys)
    with session_scope(engine) as s:
        assert s.get(Job, job["job_id"]).expired_at is not None  # the tombstone
    r = await api.get(url, headers=bearer(token))
    assert r.status_code == 410 and r.json()["code"] == "RESULT_EXPIRED"

    _move_back(engine, Job, job["job_id"], "expired_at", TOMBSTONE + 60)
    assert _prune(stack_settings, engine).data_tombstones >= 1
    r = await api.get(url, headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"


async def test_a_jobs_api_job_expires_then_vanishes(org, jobs_settings):
    r = await org.submit(files={"file": ("vendas.csv", CSV, "text/csv")}, params={"a": 1, "b": 2})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert (await org.finished(job_id)).status_code == 200
    info = (await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))).json()
    with session_scope(org.ctx.engine) as s:
        ended = as_utc(s.get(RepoJob, job_id).completed_at)
    assert _stamp(info["expires_at"]) == (ended + timedelta(days=7)).replace(microsecond=0)
    store, prefix = store_from_settings(jobs_settings), f"jobs/{org.slug}/{job_id}"
    assert store.exists(f"{prefix}/result.json") and store.exists(f"{prefix}/inputs/vendas.csv")

    _move_back(org.ctx.engine, RepoJob, job_id, "completed_at", RETENTION + 60)
    for route in ("", "/result", "/output", "/logs", "/params"):
        answer = await org.api.get(f"/api/v1/job/{job_id}{route}", headers=org.headers(None))
        assert answer.status_code == 410, (route, answer.text)
        assert "expired at" in answer.json()["error"]

    assert _prune(jobs_settings, org.ctx.engine).repo_jobs_expired >= 1
    for name in ("result.json", "output.zip", "logs.zip", "params.json", "inputs/vendas.csv"):
        assert not store.exists(f"{prefix}/{name}"), name
    assert (await org.api.get(f"/api/v1/job/{job_id}/result", headers=org.headers(None))).status_code == 410

    _move_back(org.ctx.engine, RepoJob, job_id, "expired_at", TOMBSTONE + 60)
    assert _prune(jobs_settings, org.ctx.engine).repo_tombstones >= 1
    r = await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))
    assert r.status_code == 404 and r.json()["error"] == "Invalid job_id"
