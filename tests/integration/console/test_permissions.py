"""The console's permission matrix, as the API's: a VisualizationViewer sees and runs endpoints, a
VisualizationManager also edits them and loads data, a CompanyAdmin sees everything, a user without a policy sees
nothing, and another company's objects are a plain 404 (even to that company's admin)."""

from __future__ import annotations

import uuid

import pytest

from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.jobs_api import repositories
from dataapi.models import Job, RepoJob
from tests.integration.console.conftest import csrf_of
from tests.support.jobs_api import FAILING_PY

ROLES = {"viewer": ["VisualizationViewer"], "manager": ["VisualizationManager"], "admin": ["CompanyAdmin"],
         "none": []}


@pytest.fixture
def world(app, make_human):
    """Company A (its endpoint, a job, an integration user with a key) with a human per role; company B with
    its own admin."""
    ctx = app.state.ctx
    a = f"a-{uuid.uuid4().hex[:8]}"
    humans = {role: make_human(policies, company=a) for role, policies in ROLES.items()}
    humans["other"] = make_human(["CompanyAdmin"])
    with session_scope(ctx.engine) as s:
        company = identity.require_company(s, a)
        d = parse_definition({"slug": "vendas", "sql": "SELECT 1 AS one"}, 100, 1000)
        endpoint, _ = upsert_endpoint(s, company, d)
        job_id = uuid.uuid4().hex[:24]
        s.add(Job(id=job_id, company_id=company.id, endpoint_id=endpoint.id, mode="sync", status="completed"))
        robot = identity.create_user(s, company, "erp", ["DataAPIConsumer"])
        key, _ = identity.create_api_key(s, ctx.hasher, company, robot)
        key_id = key.key_id
        repo, _ = repositories.upsert_repository(s, company.id, {
            "id": repositories.new_repo_id(), "name": "A's", "runner": "python", "code": FAILING_PY})
        repo_job_id = str(uuid.uuid4())
        s.add(RepoJob(id=repo_job_id, company_id=company.id, repository_id=repo.id, application_id="app",
                      client_id="client", created_by="erp", status="completed"))
    return {"humans": humans, "job": job_id, "key": key_id, "repo_job": repo_job_id}


OK, DENIED, MISSING = 200, 403, 404
GETS = [
    # path,                                       viewer, manager, admin, none,   other company's admin
    ("/console/endpoints",                          OK,     OK,      OK,    DENIED, OK),
    ("/console/endpoints/new",                      DENIED, OK,      OK,    DENIED, OK),
    ("/console/endpoints/default/vendas",           OK,     OK,      OK,    DENIED, MISSING),
    ("/console/endpoints/default/vendas/edit",      DENIED, OK,      OK,    DENIED, MISSING),
    ("/console/jobs",                               OK,     OK,      OK,    DENIED, OK),
    ("/console/jobs/data/{job}",                    OK,     OK,      OK,    DENIED, MISSING),
    ("/console/users",                              DENIED, DENIED,  OK,    DENIED, OK),
    ("/console/repositories",                       DENIED, DENIED,  OK,    DENIED, OK),
    ("/console/settings",                           DENIED, DENIED,  OK,    DENIED, OK),
]
ROLE_ORDER = ["viewer", "manager", "admin", "none", "other"]


async def test_pages_by_role(world, browser_for):
    failures = []
    for i, role in enumerate(ROLE_ORDER):
        async with browser_for(world["humans"][role]) as c:
            for path, *expected in GETS:
                url = path.format(job=world["job"])
                r = await c.get(url)
                if r.status_code != expected[i]:
                    failures.append(f"{role} GET {url}: {r.status_code}, expected {expected[i]}")
    assert not failures, "\n".join(failures)


async def test_changes_by_role(world, browser_for):
    """Saving an endpoint, creating and revoking a key: refused (403) without the action, 404 across companies."""
    expected = {"viewer": (DENIED, DENIED, DENIED), "manager": (303, DENIED, DENIED),
                "none": (DENIED, DENIED, DENIED), "other": (MISSING, MISSING, MISSING)}
    failures = []
    for role, (save, create_key, revoke) in expected.items():
        async with browser_for(world["humans"][role]) as c:
            csrf = csrf_of((await c.get("/console/jobs")).text)  # a 403 page has the logout form too
            got = (
                (await c.post("/console/endpoints/default/vendas/edit",
                              data={"csrf": csrf, "sql": "SELECT 2 AS two", "active": "on"})).status_code,
                (await c.post("/console/keys", data={"csrf": csrf, "name": "erp"})).status_code,
                (await c.post("/console/keys/revoke", data={"csrf": csrf, "key_id": world["key"]})).status_code,
            )
            if got != (save, create_key, revoke):
                failures.append(f"{role}: {got}, expected {(save, create_key, revoke)}")
    assert not failures, "\n".join(failures)


# Every console route that names an object by its path: (method, path). Another company's admin gets 404 on each,
# as on the API (tests/integration/api/test_isolation_matrix.py exempts these routes and points here).
ROUTES_WITH_IDS = [
    ("GET", "/console/endpoints/default/vendas"),
    ("GET", "/console/endpoints/default/vendas/edit"),
    ("POST", "/console/endpoints/default/vendas/edit"),
    ("POST", "/console/endpoints/default/vendas/run"),
    ("GET", "/console/jobs/data/{job}"),
    ("GET", "/console/jobs/data/{job}/result"),
    ("POST", "/console/jobs/data/{job}/redeliver"),
    ("GET", "/console/jobs/repo/{repo_job}"),
    ("GET", "/console/jobs/repo/{repo_job}/logs"),
]


async def test_another_companys_objects_are_404_on_every_route_with_an_id(world, browser_for):
    failures = []
    async with browser_for(world["humans"]["other"]) as c:
        csrf = csrf_of((await c.get("/console/jobs")).text)
        for method, path in ROUTES_WITH_IDS:
            url = path.format(job=world["job"], repo_job=world["repo_job"])
            r = await (c.get(url) if method == "GET" else c.post(url, data={"csrf": csrf, "sql": "SELECT 1"}))
            if r.status_code != MISSING:
                failures.append(f"{method} {url}: {r.status_code}")
    async with browser_for(world["humans"]["admin"]) as c:  # the same routes reach the objects in their company
        for method, path in ROUTES_WITH_IDS:
            if method == "GET" and "/result" not in path and "/logs" not in path:
                url = path.format(job=world["job"], repo_job=world["repo_job"])
                if (r := await c.get(url)).status_code != OK:
                    failures.append(f"admin {method} {url}: {r.status_code}")
    assert not failures, "\n".join(failures)
