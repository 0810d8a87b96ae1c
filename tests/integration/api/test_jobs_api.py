"""The Jobs API end to end: multipart uploads over HTTP, the real dev server, a real worker running repositories
in their own processes, output and log archives opened entry by entry."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import pytest
from sqlmodel import select

from cli.demo import REPOSITORY
from dataapi.db import session_scope
from dataapi.models import RepoJob
from tests.support.errors import error_body
from tests.support.job_runs import host_processes
from tests.support.jobs_api import CSV, Org
from tests.support.polling import wait_until


def _zip_entries(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return {name: z.read(name) for name in z.namelist()}


async def test_python_repository_end_to_end(org):
    r = await org.submit(files={"file": ("vendas.csv", CSV, "text/csv")}, params={"a": 10, "b": 20},
                         metadata={"origem": "teste"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert list(body) == ["message", "job_id"] and body["message"] == "Job created"
    job_id = body["job_id"]
    assert str(uuid.UUID(job_id)) == job_id

    result = await org.finished(job_id)
    assert result.status_code == 200, result.text
    assert result.json() == {"output": {"value": 600, "more_results": "So long, and thanks for all the fish"}}

    info = (await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))).json()
    assert info["job_id"] == job_id and info["status"] == "completed"
    assert info["repository_id"] == REPOSITORY["id"] and info["name"] == "Test Repository"
    assert info["input"] == ["vendas.csv"] and info["created_by"] == org.user and info["params"] is True
    assert info["metadata"] == {"origem": "teste"}
    assert len(info["created_on"]) == 19 and info["created_on"][10] == "_"

    params = await org.api.get(f"/api/v1/job/{job_id}/params", headers=org.headers(None))
    assert params.json() == {"a": 10, "b": 20, "hyperparam": "Hyperparam_Example"}

    output = await org.api.get(f"/api/v1/job/{job_id}/output", headers=org.headers(None))
    assert output.status_code == 200 and output.headers["content-type"] == "application/zip"
    entries = _zip_entries(output.content)
    assert list(entries) == ["summary.csv"]
    assert entries["summary.csv"].decode().splitlines()[1] == "10,20,Hyperparam_Example,1,3"

    logs = _zip_entries((await org.api.get(f"/api/v1/job/{job_id}/logs", headers=org.headers(None))).content)
    assert set(logs) == {"stdout.log", "stderr.log", "platform.log"}
    assert b"inputs: ['vendas.csv']" in logs["stdout.log"] and b"done" in logs["stdout.log"]
    assert b"staging 1 input file(s)" in logs["platform.log"] and b"completed" in logs["platform.log"]

    listed = await org.api.get("/api/v1/job", headers=org.headers())
    assert listed.status_code == 200 and listed.json() == [job_id]


async def test_sql_repository_with_a_zip_of_inputs(org):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("dados/vendas.csv", CSV.decode())
        z.writestr("metas.json", json.dumps([{"regiao": "Sul", "meta": 1}, {"regiao": "Norte", "meta": 2}]))
    r = await org.submit(files={"file": ("entrada.zip", archive.getvalue(), "application/zip")},
                         params={"minimo": 6}, repository="vendas-sql")
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    result = await org.finished(job_id)
    assert result.status_code == 200, result.text
    assert result.json() == {"regioes": 2, "metas": 2}
    info = (await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))).json()
    assert sorted(info["input"]) == ["dados/vendas.csv", "metas.json"]
    entries = _zip_entries((await org.api.get(f"/api/v1/job/{job_id}/output", headers=org.headers(None))).content)
    assert set(entries) == {"resumo.csv", "resumo.parquet"}
    assert entries["resumo.csv"].decode().splitlines() == ["regiao,total", "Norte,20", "Sul,10"]
    assert entries["resumo.parquet"][:4] == b"PAR1"


async def test_failing_job_reports_failure_and_keeps_its_logs(org):
    job_id = (await org.submit(repository="falha")).json()["job_id"]
    r = await org.finished(job_id)
    assert r.status_code == 500 and error_body(r) == {"error": "Job failed"}
    r = await org.api.get(f"/api/v1/job/{job_id}/output", headers=org.headers(None))
    assert r.status_code == 500 and error_body(r) == {"error": "Job failed"}
    logs = _zip_entries((await org.api.get(f"/api/v1/job/{job_id}/logs", headers=org.headers(None))).content)
    assert b"bad input" in logs["stderr.log"] and b"about to fail" in logs["stdout.log"]
    assert b"exited with status 3" in logs["platform.log"]
    info = (await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))).json()
    assert info["status"] == "failed" and info["params"] is False


@pytest.mark.parametrize("header", ["username", "organization_id", "application_id", "client_id", "x-api-key",
                                    "repository_id"])
async def test_missing_headers(org, header):
    r = await org.api.get("/api/v1/job", headers=org.headers(**{header: None}))
    assert r.status_code == 400 and error_body(r) == {"error": f"Missing {header}"}
    r = await org.submit(**{header: None})
    assert r.status_code == 400 and error_body(r) == {"error": f"Missing {header}"}


async def test_errors_in_the_seed_dialect(org, jobs_app):
    app, api = jobs_app
    r = await api.get("/api/v1/job", headers=org.headers(repository="nao-existe"))
    assert r.status_code == 404 and error_body(r) == {"error": "Invalid repository_id"}
    r = await org.submit(repository="nao-existe")
    assert r.status_code == 404 and error_body(r) == {"error": "Invalid repository_id"}
    for path in ("", "/result", "/params", "/output", "/logs"):
        r = await api.get(f"/api/v1/job/{uuid.uuid4()}{path}", headers=org.headers(None))
        assert r.status_code == 404 and error_body(r) == {"error": "Invalid job_id"}, path
    r = await api.delete(f"/api/v1/job/{uuid.uuid4()}", headers=org.headers(None))
    assert r.status_code == 404 and error_body(r) == {"error": "Invalid job_id"}
    for bad in ("2026", "202613011200", "abcdefghijkl", "2026010112000"):
        r = await api.get("/api/v1/job", params={"from_date": bad}, headers=org.headers())
        assert r.status_code == 400 and "from_date" in r.json()["error"], bad
    for unknown in ({"fromDate": "202601011200"}, {"": "0"}, {"from_date": "202601011200", "limit": "5"}):
        r = await api.get("/api/v1/job", params=unknown, headers=org.headers())
        assert r.status_code == 400 and r.json()["error"].startswith("Unknown query parameter"), unknown
    r = await api.get("/api/v1/job", headers=org.headers(**{"x-api-key": org.key + "x"}))
    assert r.status_code == 401 and error_body(r) == {"error": "Invalid API key"}
    other = Org(app, api)
    r = await api.get("/api/v1/job", headers=org.headers(**{"x-api-key": other.key}))
    assert r.status_code == 401  # a key of another company is refused
    no_jobs = Org(app, api, policies=("DataAPIConsumer",))
    r = await api.get("/api/v1/job", headers=no_jobs.headers())
    assert r.status_code == 403 and error_body(r) == {"error": "Forbidden"}


async def test_isolation_across_organizations_applications_and_clients(org, jobs_app):
    app, api = jobs_app
    job_id = (await org.submit(params={"a": 1, "b": 1})).json()["job_id"]
    assert (await org.finished(job_id)).status_code == 200
    other = Org(app, api)
    for headers in (org.headers(None, application="app-2"), org.headers(None, client="client-2"),
                    other.headers(None)):
        for path in ("", "/result", "/params", "/output", "/logs"):
            r = await api.get(f"/api/v1/job/{job_id}{path}", headers=headers)
            assert r.status_code == 404 and error_body(r) == {"error": "Invalid job_id"}
        assert (await api.delete(f"/api/v1/job/{job_id}", headers=headers)).status_code == 404
    assert (await api.get("/api/v1/job", headers=org.headers(client="client-2"))).json() == []
    assert (await api.get("/api/v1/job", headers=org.headers())).json() == [job_id]


JOB_PATHS = ("", "/result", "/params", "/output", "/logs")


def _row(org: Org, job_id: str) -> RepoJob:
    with session_scope(org.ctx.engine) as s:
        return s.get(RepoJob, job_id)


async def test_jobs_belong_to_the_keys_user_not_to_the_headers(org, jobs_app):
    """A second JobsAPIConsumer key of the same company, sending the owner's application_id and client_id and any
    username, neither lists, reads, downloads nor deletes the first user's job: the plain 404 of a missing job."""
    app, api = jobs_app
    job_id = (await org.submit(params={"a": 1, "b": 1})).json()["job_id"]
    assert (await org.finished(job_id)).status_code == 200

    colleague = org.add_user("colega")
    for path in JOB_PATHS:
        r = await api.get(f"/api/v1/job/{job_id}{path}", headers=org.headers(None, **colleague))
        assert (r.status_code, error_body(r)) == (404, {"error": "Invalid job_id"}), path
    assert (await api.get("/api/v1/job", headers=org.headers(**colleague))).json() == []
    r = await api.delete(f"/api/v1/job/{job_id}", headers=org.headers(None, **colleague))
    assert (r.status_code, error_body(r)) == (404, {"error": "Invalid job_id"})

    # the colleague's key with the owner's username is refused outright
    as_owner = {**colleague, "username": org.user}
    for method, path in (("GET", ""), ("GET", "/result"), ("DELETE", "")):
        r = await api.request(method, f"/api/v1/job/{job_id}{path}", headers=org.headers(None, **as_owner))
        assert (r.status_code, error_body(r)) == (403, {"error": "username does not match the API key"})
    r = await api.get("/api/v1/job", headers=org.headers(**as_owner))
    assert r.status_code == 403

    # the colleague's own job: its own, invisible to the first user
    mine = (await org.submit(params={"a": 2, "b": 2}, **colleague)).json()["job_id"]
    assert _row(org, mine).created_by == "colega"
    assert (await api.get("/api/v1/job", headers=org.headers(**colleague))).json() == [mine]
    assert (await api.get(f"/api/v1/job/{mine}", headers=org.headers(None))).status_code == 404
    await org.finished(mine, **colleague)

    # the owner still has everything
    assert (await api.get("/api/v1/job", headers=org.headers())).json() == [job_id]
    for path in JOB_PATHS:
        assert (await api.get(f"/api/v1/job/{job_id}{path}", headers=org.headers(None))).status_code == 200, path
    row = _row(org, job_id)
    assert (row.status, row.created_by) == ("completed", org.user)
    assert (row.user_id, row.api_key_id) == (org.user_id, org.api_key_id)


async def test_a_company_admin_sees_and_deletes_every_users_jobs(org, jobs_app):
    """jobs:all_clients (CompanyAdmin) reaches every user's jobs, still within the application and client named."""
    app, api = jobs_app
    job_id = (await org.submit(params={"a": 1, "b": 1})).json()["job_id"]
    assert (await org.finished(job_id)).status_code == 200
    colleague = org.add_user("colega")
    theirs = (await org.submit(params={"a": 2, "b": 2}, **colleague)).json()["job_id"]
    await org.finished(theirs, **colleague)
    admin = org.add_user("chefe", ("CompanyAdmin",))

    assert sorted((await api.get("/api/v1/job", headers=org.headers(**admin))).json()) == sorted([job_id, theirs])
    assert (await api.get("/api/v1/job", headers=org.headers(client="client-2", **admin))).json() == []
    r = await api.get(f"/api/v1/job/{job_id}", headers=org.headers(None, client="client-2", **admin))
    assert r.status_code == 404
    for path in JOB_PATHS:
        assert (await api.get(f"/api/v1/job/{job_id}{path}", headers=org.headers(None, **admin))).status_code == 200
    info = (await api.get(f"/api/v1/job/{theirs}", headers=org.headers(None, **admin))).json()
    assert info["created_by"] == "colega"

    r = await api.delete(f"/api/v1/job/{job_id}", headers=org.headers(None, **admin))
    assert (r.status_code, r.json()) == (200, {"message": "Jobs deleted"})
    assert (await api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))).status_code == 404
    assert (await api.get("/api/v1/job", headers=org.headers(**admin))).json() == [theirs]


async def test_a_username_other_than_the_keys_is_refused_and_creates_nothing(org, jobs_app):
    app, api = jobs_app
    for username in ("ana", org.user.upper(), "colega"):
        r = await org.submit(params={"a": 1}, username=username)
        assert (r.status_code, error_body(r)) == (403, {"error": "username does not match the API key"}), username
        r = await api.get("/api/v1/job", headers=org.headers(username=username))
        assert r.status_code == 403
    with session_scope(org.ctx.engine) as s:
        assert s.exec(select(RepoJob).where(RepoJob.company_id == org.company_id)).all() == []


async def test_a_utf8_user_name_is_its_own_username(org, jobs_app):
    app, api = jobs_app
    joao = org.add_user("joão")
    r = await api.get("/api/v1/job", headers={**org.headers(**joao), "username": "joão".encode()})
    assert (r.status_code, r.json()) == (200, [])
    r = await api.get("/api/v1/job", headers={**org.headers(**joao), "username": "joao"})
    assert r.status_code == 403


async def test_list_filters_by_date(org):
    job_id = (await org.submit()).json()["job_id"]
    await org.finished(job_id)
    now = time.gmtime()
    stamp = time.strftime("%Y%m%d%H%M", now)
    past, future = "200001010000", "299901010000"
    assert (await org.api.get("/api/v1/job", params={"from_date": past, "to_date": stamp},
                              headers=org.headers())).json() == [job_id]
    assert (await org.api.get("/api/v1/job", params={"from_date": future}, headers=org.headers())).json() == []
    assert (await org.api.get("/api/v1/job", params={"to_date": past}, headers=org.headers())).json() == []


async def test_bad_uploads_are_refused_and_nothing_is_stored(org, jobs_settings):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../evil.csv", "a,b\n1,2\n")
    cases = [
        ("image.csv", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "PNG"),
        ("evil.zip", archive.getvalue(), "evil"),
        ("data.json", b'{"a": ' * 100 + b"1" + b"}" * 100, "deep"),
    ]
    for name, content, _ in cases:
        r = await org.submit(files={"file": (name, content, "application/octet-stream")})
        assert r.status_code == 400 and r.json()["error"], name
        assert str(jobs_settings.var_dir) not in r.json()["error"]
    r = await org.submit(params="not json")  # the form field, not a JSON object
    assert r.status_code == 400
    r = await org.api.post("/api/v1/job/execute", files={"file": ("x.csv", b"a,b\n1,2\n")},
                           data={"params": "[1, 2]"}, headers=org.headers())
    assert r.status_code == 400 and error_body(r) == {"error": "params must be a JSON object"}
    for field in ("params", "metadata"):  # a field sent twice: neither value is taken
        r = await org.api.post("/api/v1/job/execute", files={"file": ("x.csv", b"a,b\n1,2\n")},
                               data={field: ['{"a": 1}', '{"a": 2}']}, headers=org.headers())
        assert r.status_code == 400 and error_body(r) == {"error": f"Form field {field} sent more than once"}
    r = await org.submit(files={"file": ("big.csv", b"a,b\n" + b"1,2\n" * (1 << 20), "text/csv")})
    assert r.status_code == 413 and "error" in r.json()
    with session_scope(org.ctx.engine) as s:
        assert s.exec(select(RepoJob).where(RepoJob.company_id == org.company_id)).all() == []
    assert not (jobs_settings.resolved_artifact_dir / "jobs" / org.slug).exists()


async def test_delete_running_job_kills_it_and_removes_its_files(org, jobs_settings, tmp_path):
    tag = time.time_ns() % 10**9
    job_id = (await org.submit(repository="lento", params={"sleep": 60, "tag": tag})).json()["job_id"]
    await wait_until(lambda: _exists(jobs_settings.var_dir / "work" / job_id / "started"), within=20)
    r = await org.api.get(f"/api/v1/job/{job_id}/result", headers=org.headers(None))
    assert r.status_code == 202 and r.json() == {"message": "Job not yet finished"}
    assert host_processes(f"60.{tag}")
    r = await org.api.delete(f"/api/v1/job/{job_id}", headers=org.headers(None))
    assert r.status_code == 200 and r.json() == {"message": "Jobs deleted"}
    assert (await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))).status_code == 404
    await wait_until(lambda: _none_running(f"60.{tag}"), within=10)
    await wait_until(lambda: _gone(jobs_settings.var_dir / "work" / job_id), within=10)
    assert not (jobs_settings.resolved_artifact_dir / "jobs" / org.slug / job_id).exists()


async def _exists(path) -> bool:
    return path.exists() and path.read_text() != ""


async def _gone(path) -> bool:
    return not path.exists()


async def _none_running(argument: str) -> bool:
    return not host_processes(argument)
