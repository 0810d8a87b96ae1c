"""The admin API end to end: real HTTP over ASGI, the real store and, for executions, Temporal and a worker.

Every admin answer a test receives must be a status the OpenAPI document lists for that operation."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from api import admin
from dataapi.db import session_scope
from dataapi.identity import service as identity
from tests.conftest import unique_slug
from tests.support.errors import error_body

A = "/api/v1/admin"
LOGIN = "/api/v1/auth/api-key"
NOT_FOUND = {"code": "NOT_FOUND"}

ENDPOINT = {
    "namespace": "vendas",
    "slug": "por-dia",
    "description": "Linhas por dia",
    "execution_mode": "sync",
    "max_rows": 50,
    "sql": "SELECT range AS n, range * $fator AS m FROM range(10) WHERE range < $limite "
           "AND ($regiao IS NULL OR $regiao <> 'Oeste') ORDER BY n",
    "parameters": [{"name": "fator", "type": "integer", "required": True},
                   {"name": "limite", "type": "integer", "default": 3},
                   {"name": "regiao", "type": "enum", "allowed_values": ["Norte", "Sul"]}],
}


def _documented_statuses(doc: dict) -> list[tuple[re.Pattern, str, set[str]]]:
    out = []
    for path, item in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"{[^}]+}", "[^/]+", path) + "$")
        for method, op in item.items():
            out.append((pattern, method.upper(), set(op["responses"])))
    return out


@pytest.fixture
async def api(stack_app):
    seen: list[tuple[str, str, int]] = []

    async def record(response: httpx.Response) -> None:
        seen.append((response.request.method, response.request.url.path, response.status_code))

    transport = httpx.ASGITransport(app=stack_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60,
                                 event_hooks={"response": [record]}) as c:
        yield c
    documented = _documented_statuses(stack_app.state.openapi)
    for method, path, status in seen:
        if not path.startswith(A) or status == 405:
            continue
        ops = [statuses for pattern, m, statuses in documented if m == method and pattern.match(path)]
        assert ops, f"{method} {path} is not in the OpenAPI document"
        assert str(status) in ops[0], f"{method} {path} answered {status}, not documented ({sorted(ops[0])})"


class Company:
    """A company and its users, created through the identity domain; tokens come from the real login."""

    def __init__(self, app, api: httpx.AsyncClient):
        self.ctx, self.api = app.state.ctx, api
        self.slug = unique_slug("adm")
        with session_scope(self.ctx.engine) as s:
            identity.create_company(s, self.slug)

    def user(self, *policies: str) -> dict:
        with session_scope(self.ctx.engine) as s:
            company = identity.get_company(s, self.slug)
            user = identity.create_user(s, company, f"u-{uuid.uuid4().hex[:6]}", list(policies))
            key, secret = identity.create_api_key(s, self.ctx.hasher, company, user)
            return {"name": user.name, "company_slug": self.slug, "api_key": key.key_id, "api_secret": secret}

    async def headers(self, *policies: str) -> dict:
        u = self.user(*policies)
        r = await self.api.post(LOGIN, json={k: u[k] for k in ("company_slug", "api_key", "api_secret")})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def company(stack_app, api) -> Company:
    return Company(stack_app, api)


def error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "request_id"} and body["code"] == code, body
    return body


def concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "x", path).replace("/keys/x", "/keys/s42_aaaaaaaaaaaaaaaaaaaa")


# --- endpoints ---------------------------------------------------------------------------------------

async def test_endpoint_crud(company, api):
    h = await company.headers("CompanyAdmin")
    r = await api.post(f"{A}/endpoints", json=ENDPOINT, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert {k: created[k] for k in ("namespace", "slug", "execution_mode", "max_rows", "description", "sql")} == \
        {k: ENDPOINT[k] for k in ("namespace", "slug", "execution_mode", "max_rows", "description", "sql")}
    assert created["active"] is True and created["created_at"] and created["updated_at"]
    assert [p["name"] for p in created["parameters"]] == ["fator", "limite", "regiao"]
    assert created["parameters"][1]["default"] == 3
    assert created["columns"] == [{"name": "n", "type": "bigint", "duckdb_type": "BIGINT"},
                                  {"name": "m", "type": "bigint", "duckdb_type": "BIGINT"}]
    assert "warnings" not in created

    r = await api.get(f"{A}/endpoints/vendas/por-dia", headers=h)
    assert r.status_code == 200 and r.json() == created

    error(await api.post(f"{A}/endpoints", json=ENDPOINT, headers=h), 409, "CONFLICT")
    changed = {**ENDPOINT, "max_rows": 7, "execution_mode": "async", "active": False}
    r = await api.put(f"{A}/endpoints/vendas/por-dia", json=changed, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["max_rows"], r.json()["execution_mode"], r.json()["active"]) == (7, "async", False)
    r = await api.put(f"{A}/endpoints/default/outro", json={"sql": "SELECT 1 AS x"}, headers=h)
    assert r.status_code == 201 and r.json()["namespace"] == "default" and r.json()["max_rows"] == 10000
    error(await api.put(f"{A}/endpoints/default/outro", json={"slug": "diferente", "sql": "SELECT 1"}, headers=h),
          400, "INVALID_DEFINITION")

    r = await api.get(f"{A}/endpoints", headers=h)
    assert r.status_code == 200
    assert [(e["namespace"], e["slug"]) for e in r.json()] == [("default", "outro"), ("vendas", "por-dia")]

    assert (await api.delete(f"{A}/endpoints/vendas/por-dia", headers=h)).status_code == 204
    error(await api.get(f"{A}/endpoints/vendas/por-dia", headers=h), 404, "NOT_FOUND")
    error(await api.delete(f"{A}/endpoints/vendas/por-dia", headers=h), 404, "NOT_FOUND")
    assert [e["slug"] for e in (await api.get(f"{A}/endpoints", headers=h)).json()] == ["outro"]


@pytest.mark.parametrize("change", [
    {"slug": "Bad_Slug"}, {"slug": "a/b"}, {"slug": "-x"}, {"slug": ""}, {"slug": 5}, {"namespace": "Default"},
    {"parameters": [{"name": "fator", "type": "uuid"}]},
    {"parameters": [{"name": "fator", "type": "integer"}, {"name": "fator", "type": "integer"}]},
    {"max_rows": 0}, {"max_rows": 100_001}, {"max_rows": -1}, {"max_rows": True}, {"max_rows": "10"},
    {"surprise": 1}, {"execution_mode": "later"}, {"sql": ""}, {"sql": None}, {"parameters": "fator"},
    {"active": "yes"}, {"parameters": [{"name": "Fator", "type": "integer"}]},
])
async def test_bad_definitions_are_400(company, api, change):
    h = await company.headers("VisualizationManager")
    body = {**ENDPOINT, **change}
    error(await api.post(f"{A}/endpoints", json=body, headers=h), 400, "INVALID_DEFINITION")
    slug = body["slug"]
    if isinstance(slug, str) and slug and "/" not in slug and body["namespace"] == "vendas":  # a routable path
        error(await api.put(f"{A}/endpoints/vendas/{slug}", json=body, headers=h), 400, "INVALID_DEFINITION")
    assert (await api.get(f"{A}/endpoints", headers=h)).json() == []


# --- validation at save: the SQL is bound on the company's current database --------------------------------

@pytest.mark.parametrize("sql, parameters, says", [
    ("SELEC 1", [], "syntax error"),
    ("SELECT * FROM nao_existe", [], "Table with name nao_existe does not exist"),
    ("SELECT sum(valr) AS s FROM range(3) t(valor)", [], 'Candidate bindings: "valor" (line 1, column 12)'),
    ("SELECT 1 AS a,\n  sem_coluna AS b", [], "FROM clause is missing (line 2, column 3)"),
    ("DROP TABLE x", [], "single SELECT"),
    ("SELECT 1 AS a; SELECT 2 AS b", [], "single SELECT"),
    ("SELECT current_setting('threads') AS t", [], "current_setting is not allowed"),
    ("SELECT $fator + $nao_declarado AS x", [{"name": "fator", "type": "integer"}], "no parameter 'nao_declarado'"),
    ("SELECT $1 AS x", [], "positional placeholder"),
    ("SELECT 1 AS x", [{"name": "sobra", "type": "integer"}], "'sobra' is declared but the SQL does not use"),
])
async def test_sql_that_does_not_prepare_is_422(company, api, sql, parameters, says):
    h = await company.headers("VisualizationManager")
    body = {"namespace": "vendas", "slug": "quebrado", "sql": sql, "parameters": parameters}
    for r in (await api.post(f"{A}/endpoints", json=body, headers=h),
              await api.put(f"{A}/endpoints/vendas/quebrado", json=body, headers=h)):
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "INVALID_SQL" and says in r.json()["message"], r.json()
        assert "/" not in r.json()["message"].replace("/*", "")  # no server path
    assert (await api.get(f"{A}/endpoints", headers=h)).json() == []


async def test_validation_binds_on_the_current_database_and_can_be_deferred(company, api, tmp_path):
    from activities.duck.versions import load_file

    h = await company.headers("VisualizationManager")
    body = {"namespace": "vendas", "slug": "totais", "parameters": [{"name": "regiao", "type": "string"}],
            "sql": "SELECT regiao, sum(valor) AS total FROM t WHERE regiao = $regiao GROUP BY regiao"}
    r = await api.post(f"{A}/endpoints", json=body, headers=h)
    assert r.status_code == 422 and "Table with name t does not exist" in r.json()["message"], r.text
    assert (await api.get(f"{A}/endpoints", headers=h)).json() == []

    # saved before its table is loaded: explicitly, with a warning, and no columns known
    r = await api.post(f"{A}/endpoints?validate=false", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["columns"] is None and "not checked" in r.json()["warnings"][0]
    r = await api.put(f"{A}/endpoints/vendas/totais?validate=talvez", json=body, headers=h)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_DEFINITION"
    # validate=false skips the database, not the rest: placeholders are still checked
    r = await api.put(f"{A}/endpoints/vendas/totais?validate=false", json={**body, "parameters": []}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "INVALID_SQL"

    csv = tmp_path / "t.csv"
    csv.write_text("regiao,valor\nSul,10\nNorte,5\n")
    load_file(company.ctx.settings.resolved_data_dir, company.slug, "t", csv)
    r = await api.put(f"{A}/endpoints/vendas/totais", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["columns"] == [{"name": "regiao", "type": "varchar", "duckdb_type": "VARCHAR"},
                                   {"name": "total", "type": "bigint", "duckdb_type": "HUGEINT"}]
    assert "warnings" not in r.json()
    r = await api.put(f"{A}/endpoints/vendas/totais", json={**body, "sql": body["sql"].replace("sum(valor)",
                                                                                            "sum(valr)")}, headers=h)
    assert r.status_code == 422 and 'Candidate bindings: "valor"' in r.json()["message"], r.text
    assert (await api.get(f"{A}/endpoints/vendas/totais", headers=h)).json()["sql"] == body["sql"]


async def test_invalid_bodies_are_4xx(company, api):
    h = await company.headers("CompanyAdmin")
    for path in ("/endpoints", "/share-contexts", "/users"):
        error(await api.post(A + path, content=b"[1]", headers={**h, "content-type": "application/json"}),
              400, "INVALID_REQUEST")
        error(await api.post(A + path, content=b"{", headers={**h, "content-type": "application/json"}),
              400, "INVALID_JSON")


# --- share contexts ----------------------------------------------------------------------------------

async def test_share_contexts(company, api):
    h = await company.headers("CompanyAdmin")
    assert (await api.post(f"{A}/endpoints", json=ENDPOINT, headers=h)).status_code == 201
    consumer = company.user("DataAPIConsumer")

    r = await api.post(f"{A}/share-contexts", json={"user": consumer["name"], "rules": {"regiao": {"pinned": "Sul"}}},
                       headers=h)
    assert r.status_code == 201, r.text
    by_user = r.json()
    assert by_user["user"] == consumer["name"] and by_user["api_key"] is None and by_user["endpoint"] is None
    assert by_user["rules"] == {"regiao": {"pinned": "Sul"}} and isinstance(by_user["id"], int)

    r = await api.post(f"{A}/share-contexts", headers=h, json={
        "api_key": consumer["api_key"], "endpoint": "vendas/por-dia", "rules": {"regiao": {"allowed": ["Sul"]}}})
    assert r.status_code == 201, r.text
    by_key = r.json()
    assert by_key["api_key"] == consumer["api_key"] and by_key["user"] is None
    assert by_key["endpoint"] == "vendas/por-dia"

    r = await api.post(f"{A}/share-contexts", headers=h, json={
        "user": consumer["name"], "endpoint": "vendas/por-dia", "rules": {"fator": {"allowed": [1, 2]}}})
    assert r.status_code == 201 and r.json()["user"] == consumer["name"]

    listed = (await api.get(f"{A}/share-contexts", headers=h)).json()
    assert [c["id"] for c in listed] == [by_user["id"], by_key["id"], r.json()["id"]]

    for bad in ({"rules": {"regiao": {"pinned": "Sul"}}},  # bound to nobody
                {"user": consumer["name"], "api_key": consumer["api_key"], "rules": {"regiao": {"pinned": "Sul"}}},
                {"user": "ninguem", "rules": {"regiao": {"pinned": "Sul"}}},
                {"api_key": "s42_aaaaaaaaaaaaaaaaaaaa", "rules": {"regiao": {"pinned": "Sul"}}},
                {"user": consumer["name"], "rules": {}},
                {"user": consumer["name"], "rules": {"regiao": "Sul"}},
                {"user": consumer["name"], "endpoint": "vendas/por-dia", "rules": {"nao_existe": {"pinned": 1}}},
                {"user": consumer["name"], "endpoint": "vendas/por-dia", "rules": {"regiao": {"pinned": "Leste"}}},
                {"user": 7, "rules": {"regiao": {"pinned": "Sul"}}},
                {"user": consumer["name"], "rules": {"regiao": {"pinned": "Sul"}}, "extra": True}):
        error(await api.post(f"{A}/share-contexts", json=bad, headers=h), 400, "INVALID_DEFINITION")
    r = await api.post(f"{A}/share-contexts", headers=h,
                       json={"user": consumer["name"], "endpoint": "vendas/nao-existe", "rules": {"x": {"pinned": 1}}})
    error(r, 404, "NOT_FOUND")

    assert (await api.delete(f"{A}/share-contexts/{by_user['id']}", headers=h)).status_code == 204
    error(await api.delete(f"{A}/share-contexts/{by_user['id']}", headers=h), 404, "NOT_FOUND")
    for junk in ("abc", "-1", "0", "9" * 30, "%C2%B2", "%D9%A1"):  # "²" and Arabic-Indic "١" are isdigit()
        error(await api.delete(f"{A}/share-contexts/{junk}", headers=h), 404, "NOT_FOUND")
    assert [c["id"] for c in (await api.get(f"{A}/share-contexts", headers=h)).json()] == \
        [by_key["id"], listed[2]["id"]]


# --- users and keys ----------------------------------------------------------------------------------

async def test_users_and_keys(company, api):
    h = await company.headers("CompanyAdmin")
    r = await api.post(f"{A}/users", json={"name": "erp", "policies": ["DataAPIConsumer"]}, headers=h)
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in ("name", "kind", "disabled", "policies")} == \
        {"name": "erp", "kind": "integration", "disabled": False, "policies": ["DataAPIConsumer"]}
    assert "erp" in [u["name"] for u in (await api.get(f"{A}/users", headers=h)).json()]
    for bad in ({"name": "x", "policies": ["Root"]}, {"name": "", "policies": []},
                {"name": 1}, {"name": "y", "policies": "CompanyAdmin"}, {"name": "z", "kind": "robot"}):
        error(await api.post(f"{A}/users", json=bad, headers=h), 400, "INVALID_DEFINITION")
    error(await api.post(f"{A}/users", json={"name": "erp", "policies": []}, headers=h), 409, "CONFLICT")
    assert (await api.post(f"{A}/users", json={"name": "ana", "kind": "human"}, headers=h)).status_code == 201
    error(await api.post(f"{A}/users/ana/keys", headers=h), 400, "INVALID_DEFINITION")
    error(await api.post(f"{A}/users/ninguem/keys", headers=h), 404, "NOT_FOUND")

    r = await api.post(f"{A}/users/erp/keys", headers=h)
    assert r.status_code == 201, r.text
    key = r.json()
    assert set(key) == {"company_slug", "api_key", "api_secret"} and key["company_slug"] == company.slug
    login = await api.post(LOGIN, json=key)
    assert login.status_code == 200, login.text
    assert login.json()["user"]["name"] == "erp"
    refresh_token = login.json()["refresh_token"]

    assert (await api.delete(f"{A}/keys/{key['api_key']}", headers=h)).status_code == 204
    error(await api.post(LOGIN, json=key), 401, "UNAUTHORIZED")
    r = await api.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    error(r, 401, "UNAUTHORIZED")
    # revoking twice is idempotent; an unknown key is a 404
    assert (await api.delete(f"{A}/keys/{key['api_key']}", headers=h)).status_code == 204
    error(await api.delete(f"{A}/keys/s42_aaaaaaaaaaaaaaaaaaaa", headers=h), 404, "NOT_FOUND")


# --- permissions and isolation -----------------------------------------------------------------------

async def _every_admin_route(api, h) -> list[tuple[str, str, httpx.Response]]:
    out = []
    for route in admin.routes:
        for method in sorted(route.methods - {"HEAD"}):
            path = concrete(route.path)
            out.append((method, path, await api.request(method, path, json={}, headers=h)))
    return out


async def test_consumer_is_forbidden_everywhere(company, api):
    for policies in (("DataAPIConsumer",), ("VisualizationViewer",), ()):
        h = await company.headers(*policies)
        answers = await _every_admin_route(api, h)
        assert len(answers) >= len(admin.routes)
        for method, path, r in answers:
            assert r.status_code == 403, (policies, method, path, r.text)
            assert r.json()["code"] == "FORBIDDEN", (method, path)
    for method, path, r in await _every_admin_route(api, {}):
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED", (method, path)
        assert r.headers["www-authenticate"] == "Bearer"


async def test_visualization_manager_manages_endpoints_only(company, api):
    h = await company.headers("VisualizationManager")
    assert (await api.post(f"{A}/endpoints", json=ENDPOINT, headers=h)).status_code == 201
    assert (await api.get(f"{A}/endpoints", headers=h)).status_code == 200
    consumer = company.user("DataAPIConsumer")
    for method, path in (("GET", "/users"), ("POST", "/users"), ("POST", f"/users/{consumer['name']}/keys"),
                         ("DELETE", f"/keys/{consumer['api_key']}"), ("GET", "/webhook-secret"),
                         ("POST", "/webhook-secret/rotate"), ("GET", "/share-contexts"), ("POST", "/share-contexts"),
                         ("DELETE", "/share-contexts/1")):
        error(await api.request(method, A + path, json={"name": "x", "policies": []}, headers=h), 403, "FORBIDDEN")
    assert (await api.post(LOGIN, json={k: consumer[k] for k in ("company_slug", "api_key", "api_secret")})
            ).status_code == 200, "the refused revocation must not have happened"


async def test_visualization_manager_cannot_lift_its_share_context(stack, company, api):
    """Share contexts need admin:share_contexts (CompanyAdmin only): a VisualizationManager restricted by one can
    neither see, add to nor remove it, and the restriction keeps holding on its own executions."""
    admin_h = await company.headers("CompanyAdmin")
    assert (await api.post(f"{A}/endpoints", json=ENDPOINT, headers=admin_h)).status_code == 201
    manager = company.user("VisualizationManager")
    login = await api.post(LOGIN, json={k: manager[k] for k in ("company_slug", "api_key", "api_secret")})
    h = {"Authorization": f"Bearer {login.json()['access_token']}"}
    r = await api.post(f"{A}/share-contexts", headers=admin_h, json={
        "user": manager["name"], "endpoint": "vendas/por-dia", "rules": {"fator": {"pinned": 5}}})
    assert r.status_code == 201, r.text
    context = r.json()
    execute = "/api/v1/data-api/vendas/por-dia/execute"
    body = (await api.post(execute, json={"parameter_values": {}}, headers=h)).json()
    assert [row["m"] for row in body["rows"]] == [0, 5, 10]

    for method, path, payload in (
            ("GET", "/share-contexts", None),
            ("POST", "/share-contexts", {"user": manager["name"], "rules": {"regiao": {"pinned": "Sul"}}}),
            ("DELETE", f"/share-contexts/{context['id']}", None)):
        message = error(await api.request(method, A + path, json=payload, headers=h), 403, "FORBIDDEN")["message"]
        assert "admin:share_contexts" in message

    # the context is still in force: the pinned value, nothing else
    body = (await api.post(execute, json={"parameter_values": {}}, headers=h)).json()
    assert [row["m"] for row in body["rows"]] == [0, 5, 10]
    error(await api.post(execute, json={"parameter_values": {"fator": 6}}, headers=h), 422, "INVALID_PARAMETER")
    # and the POST added nothing: the admin sees the one context, then lifts it
    assert [c["id"] for c in (await api.get(f"{A}/share-contexts", headers=admin_h)).json()] == [context["id"]]
    assert (await api.delete(f"{A}/share-contexts/{context['id']}", headers=admin_h)).status_code == 204
    body = (await api.post(execute, json={"parameter_values": {"fator": 6}}, headers=h)).json()
    assert [row["m"] for row in body["rows"]] == [0, 6, 12]


async def test_another_companys_objects_are_plain_404s(stack_app, api):
    a, b = Company(stack_app, api), Company(stack_app, api)
    ha, hb = await a.headers("CompanyAdmin"), await b.headers("CompanyAdmin")
    assert (await api.post(f"{A}/endpoints", json=ENDPOINT, headers=hb)).status_code == 201
    b_user = b.user("DataAPIConsumer")
    r = await api.post(f"{A}/share-contexts", json={"user": b_user["name"], "rules": {"regiao": {"pinned": "Sul"}}},
                       headers=hb)
    b_context = r.json()["id"]

    def same(r1: httpx.Response, r2: httpx.Response) -> None:
        assert r1.status_code == r2.status_code == 404
        assert error_body(r1) == error_body(r2) and r1.json()["code"] == "NOT_FOUND"

    same(await api.get(f"{A}/endpoints/vendas/por-dia", headers=ha),
         await api.get(f"{A}/endpoints/vendas/nao-existe", headers=ha))
    same(await api.delete(f"{A}/endpoints/vendas/por-dia", headers=ha),
         await api.delete(f"{A}/endpoints/vendas/nao-existe", headers=ha))
    same(await api.delete(f"{A}/share-contexts/{b_context}", headers=ha),
         await api.delete(f"{A}/share-contexts/999999999", headers=ha))
    same(await api.delete(f"{A}/keys/{b_user['api_key']}", headers=ha),
         await api.delete(f"{A}/keys/s42_aaaaaaaaaaaaaaaaaaaa", headers=ha))
    same(await api.post(f"{A}/users/{b_user['name']}/keys", headers=ha),
         await api.post(f"{A}/users/ninguem/keys", headers=ha))
    r1 = await api.post(f"{A}/share-contexts", json={"user": b_user["name"], "rules": {"r": {"pinned": 1}}}, headers=ha)
    r2 = await api.post(f"{A}/share-contexts", json={"user": "ninguem", "rules": {"r": {"pinned": 1}}}, headers=ha)
    assert r1.status_code == r2.status_code == 400
    assert r1.json()["message"].replace(b_user["name"], "ninguem") == r2.json()["message"]
    r = await api.post(f"{A}/share-contexts", json={"api_key": b_user["api_key"], "rules": {"r": {"pinned": 1}}},
                       headers=ha)
    error(r, 400, "INVALID_DEFINITION")

    assert (await api.get(f"{A}/endpoints", headers=ha)).json() == []
    assert (await api.get(f"{A}/share-contexts", headers=ha)).json() == []
    assert b_user["name"] not in [u["name"] for u in (await api.get(f"{A}/users", headers=ha)).json()]
    # B's objects are untouched
    assert (await api.get(f"{A}/endpoints/vendas/por-dia", headers=hb)).status_code == 200
    assert [c["id"] for c in (await api.get(f"{A}/share-contexts", headers=hb)).json()] == [b_context]
    assert (await api.post(LOGIN, json={k: b_user[k] for k in ("company_slug", "api_key", "api_secret")})
            ).status_code == 200


# --- an endpoint created through the admin API runs ------------------------------------------------

async def test_admin_created_endpoint_executes(stack, company, api):
    admin_h = await company.headers("CompanyAdmin")
    assert (await api.post(f"{A}/endpoints", json=ENDPOINT, headers=admin_h)).status_code == 201
    consumer = company.user("DataAPIConsumer")
    token = (await api.post(LOGIN, json={k: consumer[k] for k in ("company_slug", "api_key", "api_secret")})).json()
    h = {"Authorization": f"Bearer {token['access_token']}"}
    execute = "/api/v1/data-api/vendas/por-dia/execute"

    r = await api.post(execute, json={"parameter_values": {"fator": 10}}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == [{"name": "n", "type": "bigint"}, {"name": "m", "type": "bigint"}]
    assert body["rows"] == [{"n": 0, "m": 0}, {"n": 1, "m": 10}, {"n": 2, "m": 20}]
    assert body["row_count"] == 3 and body["max_rows"] == 50 and body["truncated"] is False

    r = await api.put(f"{A}/endpoints/vendas/por-dia", json={**ENDPOINT, "max_rows": 2}, headers=admin_h)
    assert r.status_code == 200
    body = (await api.post(execute, json={"parameter_values": {"fator": 1, "limite": 9}}, headers=h)).json()
    assert body["row_count"] == 2 and body["truncated"] is True and body["max_rows"] == 2

    r = await api.post(f"{A}/share-contexts", headers=admin_h, json={
        "user": consumer["name"], "endpoint": "vendas/por-dia", "rules": {"fator": {"pinned": 5}}})
    assert r.status_code == 201
    r = await api.post(execute, json={"parameter_values": {"fator": 6}}, headers=h)
    assert r.status_code == 422 and "fator" in r.json()["message"]
    body = (await api.post(execute, json={"parameter_values": {}}, headers=h)).json()
    assert [row["m"] for row in body["rows"]] == [0, 5]

    # an endpoint that ran cannot be deleted, only deactivated
    error(await api.delete(f"{A}/endpoints/vendas/por-dia", headers=admin_h), 409, "CONFLICT")
    r = await api.put(f"{A}/endpoints/vendas/por-dia", json={**ENDPOINT, "active": False}, headers=admin_h)
    assert r.status_code == 200
    error(await api.post(execute, json={"parameter_values": {"fator": 5}}, headers=h), 404, "ENDPOINT_NOT_FOUND")
