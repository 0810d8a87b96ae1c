"""The Data API's job rows and endpoint reads on SQLite and PostgreSQL: the Core statements of the execution
path (``executable_endpoint``, ``effective_share_context``, ``create_job``, ``finish_job``)."""

from __future__ import annotations

import json
import secrets
import threading

import pytest
from sqlalchemy import select

from dataapi.data_api.definitions import parse_definition, specs_of
from dataapi.data_api.endpoints import executable_endpoint, upsert_endpoint
from dataapi.data_api.jobs import create_job, finish_job
from dataapi.data_api.share_contexts import create_share_context, effective_share_context
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.models import Job
from tests.conftest import unique_slug

SQL = "SELECT $id AS id, $regiao AS regiao"
PARAMS = [{"name": "id", "type": "integer", "required": True}, {"name": "regiao", "type": "string"}]


@pytest.fixture
def tenant(store):
    """A company with a user, an API key, an active sync endpoint and an inactive one."""
    with session_scope(store) as s:
        company = identity.create_company(s, unique_slug())
        user = identity.create_user(s, company, "integration", ["DataAPIConsumer"])
        key, _ = identity.create_api_key(s, identity.SecretHasher(b"k" * 48), company, user)
        endpoint, _ = upsert_endpoint(s, company, parse_definition(
            {"namespace": "vendas", "slug": "por-id", "sql": SQL, "parameters": PARAMS, "max_rows": 50}, 1000, 10_000))
        upsert_endpoint(s, company, parse_definition(
            {"namespace": "vendas", "slug": "velho", "sql": SQL, "parameters": PARAMS, "active": False}, 1000, 10_000))
        return {"company": company, "user_id": user.id, "key": key, "endpoint": endpoint, "endpoint_id": endpoint.id}


def _insert(t: dict, mode: str = "sync") -> dict:
    return {"company_id": t["company"].id, "endpoint_id": t["endpoint_id"], "mode": mode, "parameters": "{}",
            "user_id": t["user_id"], "api_key_id": None, "callback_url": None}


def _job(store, job_id: str) -> Job | None:
    with session_scope(store) as s:
        return s.get(Job, job_id)


def test_executable_endpoint_reads_the_active_endpoint_of_the_company_only(store, tenant):
    company_id = tenant["company"].id
    with store.connect() as conn:
        found = executable_endpoint(conn, company_id, "vendas", "por-id")
        assert (found.id, found.sql, found.execution_mode, found.max_rows) == (tenant["endpoint_id"], SQL, "sync", 50)
        assert [p.name for p in specs_of(found)] == ["id", "regiao"]
        assert executable_endpoint(conn, company_id, "vendas", "velho") is None  # inactive
        assert executable_endpoint(conn, company_id, "outro", "por-id") is None
        assert executable_endpoint(conn, company_id + 10_000, "vendas", "por-id") is None  # another company


def test_share_contexts_of_user_and_key_merge(store, tenant):
    company, key = tenant["company"], tenant["key"]
    with session_scope(store) as s:
        create_share_context(s, company, {"regiao": {"allowed": ["Sul", "Norte", "Leste"]}}, user_name="integration")
        create_share_context(s, company, {"regiao": {"allowed": ["Sul", "Leste"]}}, api_key=key.key_id,
                             endpoint=tenant["endpoint"])
    with store.connect() as conn:
        by_user = effective_share_context(conn, company.id, tenant["user_id"], None, tenant["endpoint_id"])
        both = effective_share_context(conn, company.id, tenant["user_id"], key.id, tenant["endpoint_id"])
        other_endpoint = effective_share_context(conn, company.id, tenant["user_id"], key.id, tenant["endpoint_id"] + 1)
        nobody = effective_share_context(conn, company.id, tenant["user_id"] + 10_000, None, tenant["endpoint_id"])
    assert by_user.to_dict() == {"regiao": {"allowed": ["Sul", "Norte", "Leste"]}}
    assert both.to_dict() == {"regiao": {"allowed": ["Sul", "Leste"]}}  # the intersection
    assert other_endpoint.to_dict() == by_user.to_dict()  # the key's context is bound to one endpoint
    assert nobody is None


def test_finish_job_inserts_a_sync_job_once_and_the_first_outcome_wins(store, tenant):
    job_id = secrets.token_hex(12)
    with store.begin() as conn:
        finish_job(conn, job_id, status="completed", insert=_insert(tenant), result_key="k", row_count=3,
                   truncated=False)
    with store.begin() as conn:  # a retried activity's second outcome changes nothing
        finish_job(conn, job_id, status="failed", insert=_insert(tenant), error="late")
    job = _job(store, job_id)
    assert (job.status, job.result_key, job.row_count, job.truncated, job.error) == ("completed", "k", 3, False, None)
    assert job.created_at is not None and job.completed_at is not None and job.mode == "sync"


def test_finish_job_updates_an_async_job_that_is_processing(store, tenant):
    job_id = secrets.token_hex(12)
    with store.begin() as conn:
        create_job(conn, id=job_id, **{**_insert(tenant, "async"), "parameters": json.dumps({"id": 1})})
    created = _job(store, job_id)
    assert (created.status, created.completed_at, created.parameters) == ("processing", None, '{"id": 1}')
    with store.begin() as conn:  # the query activity passes the insert fields for every mode
        finish_job(conn, job_id, status="completed", insert=_insert(tenant, "async"), result_key="r", row_count=1)
    with store.begin() as conn:
        finish_job(conn, job_id, status="failed", error="too late")
    job = _job(store, job_id)
    assert (job.status, job.result_key, job.row_count, job.error, job.mode) == ("completed", "r", 1, None, "async")
    assert job.completed_at is not None and job.created_at == created.created_at


def test_finish_job_without_insert_ignores_a_missing_row(store, tenant):
    job_id = secrets.token_hex(12)
    with store.begin() as conn:
        finish_job(conn, job_id, status="failed", error="Job could not be started")
    assert _job(store, job_id) is None


def test_job_writes_refuse_a_field_that_is_no_column(store, tenant):
    """Values are bound to a prebuilt statement, where a misspelt field would otherwise be dropped unseen."""
    job_id = secrets.token_hex(12)
    with pytest.raises(ValueError, match="result_keys"), store.begin() as conn:
        finish_job(conn, job_id, status="completed", insert=_insert(tenant), result_keys="k")
    with pytest.raises(ValueError, match="endpoint"), store.begin() as conn:
        finish_job(conn, job_id, status="completed", insert={**_insert(tenant), "endpoint": 1})
    with pytest.raises(ValueError, match="parameter"), store.begin() as conn:
        create_job(conn, id=job_id, **{**_insert(tenant, "async"), "parameter": "{}"})
    assert _job(store, job_id) is None


def test_concurrent_outcomes_of_one_sync_job_record_one(store, tenant):
    """Two attempts of one job finishing at once (a retry racing a slow first attempt): one row, one outcome."""
    job_id, barrier, errors = secrets.token_hex(12), threading.Barrier(4), []

    def finish(n: int) -> None:
        try:
            barrier.wait()
            with store.begin() as conn:
                finish_job(conn, job_id, status="completed", insert=_insert(tenant), row_count=n)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.connect() as conn:
        rows = conn.execute(select(Job.__table__.c.row_count).where(Job.__table__.c.id == job_id)).all()
    assert len(rows) == 1 and rows[0][0] in range(4)
