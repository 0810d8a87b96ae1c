"""The Data API end to end: real HTTP over ASGI, the real Temporal dev server, a real worker and DuckDB."""

from __future__ import annotations

import re

import pytest

from tests.support.data_api import Tenant, bearer, execute, wait_job
from tests.support.errors import error_body

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


async def test_sync_execute_matches_the_guide(tenant, api):
    token = await tenant.token()
    r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2026-01-01", "regiao": "Sul"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["columns", "rows", "row_count", "truncated", "max_rows", "executed_at"]
    assert body["columns"] == [{"name": "regiao", "type": "varchar"}, {"name": "total", "type": "decimal"}]
    assert len(body["rows"]) == 1 and body["rows"][0]["regiao"] == "Sul"
    assert isinstance(body["rows"][0]["total"], float) and body["rows"][0]["total"] > 0
    assert body["row_count"] == 1 and body["truncated"] is False and body["max_rows"] == 10000
    assert ISO_Z.match(body["executed_at"])

    all_regions = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2026-01-01"})
    rows = all_regions.json()["rows"]
    assert [row["regiao"] for row in rows] == sorted(["Centro-Oeste", "Nordeste", "Norte", "Sudeste", "Sul"])
    assert next(row for row in rows if row["regiao"] == "Sul")["total"] == body["rows"][0]["total"]


async def test_async_execute_then_poll(tenant, api):
    token = await tenant.token()
    r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"},
                      callback_url="https://my-system.com/webhook/result")
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert list(accepted) == ["job_id", "status", "polling_url"]
    assert re.fullmatch(r"[0-9a-f]{24}", accepted["job_id"]) and accepted["status"] == "processing"
    assert accepted["polling_url"] == f"/api/v1/data-api/default/relatorio-mensal/jobs/{accepted['job_id']}"

    job = await wait_job(api, token, accepted["polling_url"])
    # The seed's fields, in order, then when it expires and the callback's state (it has a callback_url).
    assert list(job) == ["job_id", "status", "result", "error", "created_at", "completed_at", "expires_at",
                         "callback"]
    assert job["callback"]["status"] == "pending"
    assert job["status"] == "completed" and job["error"] is None
    assert ISO_Z.match(job["created_at"]) and ISO_Z.match(job["completed_at"])
    result = job["result"]
    assert list(result) == ["columns", "rows", "row_count", "truncated"]
    assert [c["name"] for c in result["columns"]] == ["regiao", "produto", "vendas", "total"]
    assert result["row_count"] == len(result["rows"]) > 0 and result["truncated"] is False
    assert {c["type"] for c in result["columns"]} >= {"varchar", "bigint", "decimal"}


async def test_status_codes(tenant, api, stack):
    token = await tenant.token()
    no_perm = await tenant.token(policies=())
    ep = "default/vendas-por-regiao"
    good = {"data_inicio": "2026-01-01"}

    r = await api.post(f"/api/v1/data-api/{ep}/execute", json={"parameter_values": good})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = await execute(api, "not-a-token", ep, good)
    assert r.status_code == 401
    r = await execute(api, no_perm, ep, good)
    assert r.status_code == 403 and error_body(r) == {"code": "FORBIDDEN", "message": r.json()["message"]}
    r = await api.get(f"/api/v1/data-api/{ep}/jobs/{'a' * 24}", headers=bearer(no_perm))
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"

    for missing in ("default/nao-existe", "outro/vendas-por-regiao", "Default/vendas-por-regiao"):
        r = await execute(api, token, missing, good)
        assert r.status_code == 404 and r.json()["code"] == "ENDPOINT_NOT_FOUND", missing
    tenant.endpoint(slug="inativo", sql="SELECT 1 AS x", active=False)
    r = await execute(api, token, "default/inativo")
    assert r.status_code == 404 and r.json()["code"] == "ENDPOINT_NOT_FOUND"

    r = await api.post("/api/v1/data-api//vendas-por-regiao/execute", json={}, headers=bearer(token))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMS"

    r = await api.get(f"/api/v1/data-api/{ep}/jobs/{'0' * 24}", headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"
    r = await api.get(f"/api/v1/data-api/{ep}/jobs/not-a-job", headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"

    r = await execute(api, token, ep, {"data_inicio": "2026-02-30"})
    assert r.status_code == 422 and "data_inicio" in r.json()["message"]

    tenant.endpoint(slug="quebra", sql="SELECT CAST($v AS INTEGER) AS n",
                    parameters=[{"name": "v", "type": "string"}])
    r = await execute(api, token, "default/quebra", {"v": "not a number"})
    assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR"
    # DuckDB's cause, for the caller to fix its call (its own value may appear); never a server path
    assert r.json()["message"].startswith("Conversion Error: Could not convert string 'not a number'"), r.text
    assert "/" not in r.json()["message"]

    r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"}, callback_url="http://x.example/cb")
    assert r.status_code == 422 and "callback_url" in r.json()["message"]
    r = await execute(api, token, ep, good, surprise=1)
    assert r.status_code == 400


@pytest.mark.parametrize("params, message", [
    ({}, "data_inicio"),
    ({"data_inicio": None}, "data_inicio"),
    ({"data_inicio": "2026-01-01", "extra": 1}, "extra"),
    ({"data_inicio": 20260101}, "data_inicio"),
    ({"data_inicio": "2026-01-01", "regiao": "Marte"}, "regiao"),
    ({"data_inicio": "2026-01-01", "regiao": ["Sul"]}, "regiao"),
    ("not-an-object", "parameter_values"),
])
async def test_parameter_errors_are_422_naming_the_parameter(tenant, api, params, message):
    token = await tenant.token()
    r = await api.post("/api/v1/data-api/default/vendas-por-regiao/execute",
                       json={"parameter_values": params}, headers=bearer(token))
    assert r.status_code == 422, r.text
    assert message in r.json()["message"] and r.json()["code"]


async def test_share_context_pins_and_limits(tenant, api):
    pinned = tenant.user()
    tenant.share(pinned[0], {"regiao": {"pinned": "Sul"}})
    token = await tenant.token(user=pinned)
    r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2025-01-01"})
    assert r.status_code == 200 and [row["regiao"] for row in r.json()["rows"]] == ["Sul"]
    r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2025-01-01", "regiao": "Norte"})
    assert r.status_code == 422 and "regiao" in r.json()["message"]

    limited = tenant.user()
    tenant.share(limited[0], {"regiao": {"allowed": ["Sul", "Sudeste"]}}, endpoint="default/vendas-por-regiao")
    token = await tenant.token(user=limited)
    r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2025-01-01", "regiao": "Sudeste"})
    assert r.status_code == 200 and r.json()["rows"][0]["regiao"] == "Sudeste"
    r = await execute(api, token, "default/vendas-por-regiao", {"data_inicio": "2025-01-01", "regiao": "Norte"})
    assert r.status_code == 422 and "regiao" in r.json()["message"]


async def test_sql_injection_is_a_literal(tenant, api):
    token = await tenant.token()
    tenant.endpoint(slug="busca", sql="SELECT count(*) AS n FROM vendas WHERE produto = $p",
                    parameters=[{"name": "p", "type": "string", "required": True}])
    for attack in ("Mouse' OR '1'='1", "x'; DROP TABLE vendas; --", "Mouse\" OR 1=1 --"):
        r = await execute(api, token, "default/busca", {"p": attack})
        assert r.status_code == 200 and r.json()["rows"] == [{"n": 0}], attack
    r = await execute(api, token, "default/busca", {"p": "Mouse"})
    assert r.json()["rows"][0]["n"] > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_ten_thousand_wide_rows(tenant, api, mode):
    token = await tenant.token()
    cols = ", ".join(f"'{'x' * 40}' || range AS c{i}" for i in range(20))
    tenant.endpoint(slug=f"largo-{mode}", execution_mode=mode, sql=f"SELECT range AS id, {cols} FROM range(12000)")
    r = await execute(api, token, f"default/largo-{mode}")
    if mode == "async":
        assert r.status_code == 202
        job = await wait_job(api, token, r.json()["polling_url"])
        assert list(job) == ["job_id", "status", "result", "error", "created_at", "completed_at",
                             "expires_at"]  # no callback
        body = job["result"]
    else:
        assert r.status_code == 200, r.text
        body = r.json()
    assert body["row_count"] == 10000 and len(body["rows"]) == 10000 and body["truncated"] is True
    assert body["rows"][9999]["id"] == 9999 and len(body["columns"]) == 21


async def test_cross_company_isolation(stack, api):
    a, b = Tenant(stack, api), Tenant(stack, api)
    token_a, token_b = await a.token(), await b.token()
    b.endpoint(slug="so-do-b", sql="SELECT 1 AS x")
    r = await execute(api, token_a, "default/so-do-b")
    assert r.status_code == 404 and r.json()["code"] == "ENDPOINT_NOT_FOUND"
    accepted = (await execute(api, token_b, "default/relatorio-mensal", {"mes": "2026-01"})).json()
    r = await api.get(accepted["polling_url"], headers=bearer(token_a))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"
    other_endpoint = accepted["polling_url"].replace("relatorio-mensal", "vendas-por-regiao")
    r = await api.get(other_endpoint, headers=bearer(token_b))
    assert r.status_code == 404 and r.json()["code"] == "JOB_NOT_FOUND"
    # A's SQL cannot read B's data files or database.
    b_dir = stack.state.ctx.settings.resolved_data_dir / b.slug
    a.endpoint(slug="espiao", sql=f"SELECT count(*) AS n FROM read_csv('{b_dir}/files/*.csv')")
    r = await execute(api, token_a, "default/espiao")
    assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR"
