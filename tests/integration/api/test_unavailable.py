"""Dependencies down, in process (the real-process outages are in tests/chaos): a metadata store or Temporal that
does not answer is a 503 in each API's error shape, never a 500; a submission refused for want of Temporal
leaves no job "processing"; a job whose workflow Temporal does not have reads as failed a minute after it was
created, in both APIs (so nothing stays "processing" forever)."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import timedelta

import httpx
import pytest
import yaml
from sqlmodel import select
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from api.errors import unavailable as dependency_down
from cli.demo import HERE as DEMO
from cli.demo import REPOSITORY, endpoint_file
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import find_endpoint, upsert_endpoint
from dataapi.db import make_engine, session_scope, unavailable
from dataapi.identity import service as identity
from dataapi.jobs_api.repositories import find_repository, upsert_repository
from dataapi.models import Job, RepoJob, utcnow
from dataapi.settings import Settings
from tests.support.errors import error_body
from tests.support.processes import free_port

UNAVAILABLE = {"code": "SERVICE_UNAVAILABLE", "message": "Service unavailable, retry later"}
JOBS_UNAVAILABLE = {"error": "Service unavailable, retry later"}


class Company:
    """A company with the demo endpoints and repository, a user with both consumer policies, and its token."""

    def __init__(self, app):

        self.ctx = app.state.ctx
        self.slug = f"down-{uuid.uuid4().hex[:8]}"
        s = self.ctx.settings
        with session_scope(self.ctx.engine) as session:
            company = identity.create_company(session, self.slug)
            self.company_id = company.id
            for d in yaml.safe_load(endpoint_file().read_text())["endpoints"]:
                upsert_endpoint(session, company, parse_definition(d, s.default_max_rows, s.max_rows_cap))
            demo = {"files": {"main.py": (DEMO / "repository" / "main.py").read_text()}, "entry_point": "main.py"}
            upsert_repository(session, company.id, {**REPOSITORY, "code": demo})
            user = identity.create_user(session, company, "erp", ["DataAPIConsumer", "JobsAPIConsumer"])
            key, secret = identity.create_api_key(session, self.ctx.hasher, company, user)
            self.user_id = user.id
        self.login_body = {"company_slug": self.slug, "api_key": key.key_id, "api_secret": secret}
        self.headers = {"username": "erp", "organization_id": self.slug, "application_id": "a", "client_id": "c",
                        "x-api-key": f"{key.key_id}.{secret}"}

    async def token(self, api) -> dict:
        r = await api.post("/api/v1/auth/api-key", json=self.login_body)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def rows(self, model) -> list:
        with session_scope(self.ctx.engine) as session:
            return list(session.exec(select(model).where(model.company_id == self.company_id)))


def _api(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://testserver", timeout=30)


# --- the metadata store down --------------------------------------------------------------------------------

async def test_store_down_answers_503_in_each_dialect(app, client, caplog):
    company = Company(app)
    auth = await company.token(client)
    app.state.ctx.engine = make_engine(f"postgresql://127.0.0.1:{free_port()}/gone")  # refused connections
    try:
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["store"].startswith("unavailable"), r.text
        calls = {
            "login": client.post("/api/v1/auth/api-key", json=company.login_body),
            "sync": client.post("/api/v1/data-api/default/vendas-por-regiao/execute", headers=auth, json={}),
            "poll": client.get(f"/api/v1/data-api/default/relatorio-mensal/jobs/{secrets.token_hex(12)}",
                               headers=auth),
        }
        for name, call in calls.items():
            r = await call
            assert (r.status_code, error_body(r)) == (503, UNAVAILABLE), (name, r.text)
        r = await client.get(f"/api/v1/job/{uuid.uuid4()}", headers=company.headers)
        assert (r.status_code, error_body(r)) == (503, JOBS_UNAVAILABLE), r.text
        assert (await client.get("/healthz")).status_code == 200
    finally:
        app.state.ctx.engine.dispose()
    assert "Traceback" not in caplog.text  # an outage is logged as a warning, not as a bug


def test_unavailable_tells_an_outage_from_a_failing_statement(sqlite_url):
    from sqlalchemy import text

    down = make_engine(f"postgresql://127.0.0.1:{free_port()}/gone")
    with pytest.raises(Exception) as refused, down.connect():
        pass
    assert unavailable(refused.value)
    engine = make_engine(sqlite_url)
    with pytest.raises(Exception) as bad, engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not unavailable(bad.value)
    assert dependency_down(RPCError("down", RPCStatusCode.UNAVAILABLE, b"")) is not None
    assert dependency_down(RPCError("no", RPCStatusCode.INVALID_ARGUMENT, b"")) is None
    assert dependency_down(RuntimeError("Failed client connect: refused")) is not None  # a lazy client's first call
    assert dependency_down(RuntimeError("something else")) is None


# --- Temporal unreachable ------------------------------------------------------------------------------------

@pytest.fixture
def no_temporal(tmp_path, sqlite_url):
    """An app whose Temporal address has nobody listening (its lazy client never connects)."""
    settings = Settings(var_dir=tmp_path / "var", database_url=sqlite_url,
                        temporal_address=f"127.0.0.1:{free_port()}")
    engine = make_engine(sqlite_url)
    yield create_app(settings, engine)
    engine.dispose()


async def test_temporal_unreachable_answers_503_and_marks_the_refused_job_failed(no_temporal):
    company = Company(no_temporal)
    async with _api(no_temporal) as api:
        auth = await company.token(api)
        r = await api.post("/api/v1/data-api/default/vendas-por-regiao/execute", headers=auth,
                           json={"parameter_values": {"data_inicio": "2026-01-01"}})
        assert (r.status_code, error_body(r)) == (503, UNAVAILABLE), r.text
        assert no_temporal.state.ctx.sync_lane.idle  # the unstarted sync call left nothing waiting for a handoff
        r = await api.post("/api/v1/job/execute", headers={**company.headers, "repository_id": REPOSITORY["id"]},
                           data={"params": json.dumps({"a": 1, "b": 2})})
        assert (r.status_code, error_body(r)) == (503, JOBS_UNAVAILABLE), r.text
        r = await api.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["temporal"].startswith("unavailable"), r.text
    [job] = company.rows(RepoJob)
    assert (job.status, job.error) == ("failed", "Job could not be started")


async def test_async_submission_refused_for_want_of_temporal_leaves_no_job_processing(no_temporal):
    company = Company(no_temporal)
    async with _api(no_temporal) as api:
        r = await api.post("/api/v1/data-api/default/relatorio-mensal/execute", headers=await company.token(api),
                           json={"parameter_values": {"mes": "2026-03"}})
    assert (r.status_code, error_body(r)) == (503, UNAVAILABLE), r.text
    assert [job.status for job in company.rows(Job)] in ([], ["failed"])


# --- a workflow Temporal does not have: both APIs read the job as failed after a minute ------------------------

async def test_job_without_a_workflow_reads_as_failed_after_a_minute(stack_app):
    company = Company(stack_app)
    ages = {"old": timedelta(minutes=2), "new": timedelta(seconds=5)}
    with session_scope(company.ctx.engine) as session:
        endpoint = find_endpoint(session, company.company_id, "default", "relatorio-mensal")
        repo = find_repository(session, company.company_id, REPOSITORY["id"])
        data_ids, repo_ids = {}, {}
        for age, ago in ages.items():
            data_ids[age] = secrets.token_hex(12)
            session.add(Job(id=data_ids[age], company_id=company.company_id, endpoint_id=endpoint.id, mode="async",
                            created_at=utcnow() - ago))
            repo_ids[age] = str(uuid.uuid4())
            session.add(RepoJob(id=repo_ids[age], company_id=company.company_id, repository_id=repo.id,
                                application_id="a", client_id="c", created_by="erp", user_id=company.user_id,
                                created_at=utcnow() - ago))
    async with _api(stack_app) as api:
        auth = await company.token(api)
        for age, expected in (("old", "failed"), ("new", "processing")):
            r = await api.get(f"/api/v1/data-api/default/relatorio-mensal/jobs/{data_ids[age]}", headers=auth)
            assert r.status_code == 200 and r.json()["status"] == expected, r.text
            r = await api.get(f"/api/v1/job/{repo_ids[age]}", headers=company.headers)
            assert r.status_code == 200 and r.json()["status"] == expected, r.text
        r = await api.get(f"/api/v1/job/{repo_ids['old']}/result", headers=company.headers)
        assert (r.status_code, error_body(r)) == (500, {"error": "Job failed"})
        r = await api.get(f"/api/v1/data-api/default/relatorio-mensal/jobs/{data_ids['old']}", headers=auth)
        assert r.json()["error"] == "Job was lost before it started"
    errors = {job.id: job.error for job in company.rows(RepoJob)}
    assert errors == {repo_ids["old"]: "Job was lost before it started", repo_ids["new"]: None}
