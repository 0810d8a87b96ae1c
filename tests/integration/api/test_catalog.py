"""The catalog (``GET /api/v1/data-api/endpoints`` and ``/{namespace}/{slug}``): what a caller may execute, as
they may execute it, over real HTTP with the real store and a company database loaded with the demo data."""

from __future__ import annotations

from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint, validated
from dataapi.db import session_scope
from dataapi.identity import service as identity
from tests.support.data_api import Tenant, bearer

CATALOG = "/api/v1/data-api/endpoints"
ONE = "/api/v1/data-api/default/vendas-por-regiao"



def _save_validated(tenant: Tenant, **d) -> None:
    """As the admin API saves: validated on the company's database, its columns stored."""
    settings = tenant.ctx.settings
    with session_scope(tenant.ctx.engine) as s:
        company = identity.get_company(s, tenant.slug)
        definition = parse_definition(d, settings.default_max_rows, settings.max_rows_cap)
        columns, warnings = validated(settings, company, definition)
        assert warnings == []
        upsert_endpoint(s, company, definition, columns)


async def test_the_catalog_lists_the_active_endpoints_and_their_parameters(tenant, api):
    tenant.endpoint(slug="desligado", sql="SELECT 1 AS x", active=False)
    token = await tenant.token()
    r = await api.get(CATALOG, headers=bearer(token))
    assert r.status_code == 200, r.text
    entries = r.json()
    assert [(e["namespace"], e["slug"]) for e in entries] == [("default", "relatorio-mensal"),
                                                              ("default", "vendas-por-regiao")]
    mensal, vendas = entries
    assert {k: vendas[k] for k in ("description", "execution_mode", "max_rows")} == {
        "description": "Total de vendas por região a partir de uma data.", "execution_mode": "sync",
        "max_rows": 10000}
    assert mensal["execution_mode"] == "async" and "columns" not in mensal
    assert vendas["parameters"] == [
        {"name": "data_inicio", "type": "date", "required": True, "default": None,
         "description": "Primeiro dia considerado (YYYY-MM-DD)", "fixed": False},
        {"name": "regiao", "type": "enum", "required": False, "default": None,
         "description": "Região do Brasil; todas quando ausente", "fixed": False,
         "allowed_values": ["Norte", "Nordeste", "Centro-Oeste", "Sudeste", "Sul"]},
    ]
    (mes,) = mensal["parameters"]
    assert mes["pattern"] == r"^\d{4}-(0[1-9]|1[0-2])$" and mes["required"] is True


async def test_share_contexts_show_as_the_caller_sees_them(tenant, api):
    pinned = tenant.user()
    tenant.share(pinned[0], {"regiao": {"pinned": "Sul"}}, "default/vendas-por-regiao")
    narrowed = tenant.user()
    tenant.share(narrowed[0], {"regiao": {"allowed": ["Norte", "Sul", "Marte"]}})

    body = (await api.get(ONE, headers=bearer(await tenant.token(user=pinned)))).json()
    regiao = body["parameters"][1]
    assert regiao["fixed"] is True and regiao["value"] == "Sul" and regiao["default"] == "Sul"
    assert regiao["required"] is False

    body = (await api.get(ONE, headers=bearer(await tenant.token(user=narrowed)))).json()
    regiao = body["parameters"][1]
    assert regiao["fixed"] is False and regiao["allowed_values"] == ["Norte", "Sul"]

    body = (await api.get(ONE, headers=bearer(await tenant.token()))).json()  # no share context
    assert body["parameters"][1]["allowed_values"] == ["Norte", "Nordeste", "Centro-Oeste", "Sudeste", "Sul"]


async def test_one_endpoint_has_the_columns_found_by_validation(tenant, api):
    token = await tenant.token()
    body = (await api.get(ONE, headers=bearer(token))).json()
    assert body["columns"] is None  # saved without validation (the fixture writes the store directly)

    _save_validated(tenant, slug="vendas-por-regiao", description="Por região",
                    sql="SELECT regiao, CAST(SUM(valor) AS DECIMAL(18, 2)) AS total FROM vendas "
                        "WHERE data >= $data_inicio GROUP BY regiao ORDER BY regiao",
                    parameters=[{"name": "data_inicio", "type": "date", "required": True,
                                 "description": "Primeiro dia"}])
    r = await api.get(ONE, headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["description"] == "Por região" and body["parameters"][0]["description"] == "Primeiro dia"
    assert body["columns"] == [{"name": "regiao", "type": "varchar", "duckdb_type": "VARCHAR"},
                               {"name": "total", "type": "decimal", "duckdb_type": "DECIMAL(18,2)"}]
    # the types the catalog announces are the ones an execution answers with
    r = await api.post(ONE + "/execute", json={"parameter_values": {"data_inicio": "2026-01-01"}},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["columns"] == [{"name": c["name"], "type": c["type"]} for c in body["columns"]]


async def test_missing_inactive_and_other_companies_endpoints_are_404(tenant, stack, api):
    tenant.endpoint(slug="desligado", sql="SELECT 1 AS x", active=False)
    other = Tenant(stack, api)
    other.endpoint(slug="so-da-outra", sql="SELECT 1 AS x")
    token = await tenant.token()
    for path in ("/api/v1/data-api/default/desligado", "/api/v1/data-api/default/so-da-outra",
                 "/api/v1/data-api/default/nao-existe", "/api/v1/data-api/Mau/slug"):
        r = await api.get(path, headers=bearer(token))
        assert r.status_code == 404 and r.json()["code"] == "ENDPOINT_NOT_FOUND", (path, r.text)
    assert "so-da-outra" not in {e["slug"] for e in (await api.get(CATALOG, headers=bearer(token))).json()}


async def test_the_catalog_needs_data_api_execute(tenant, api):
    for path in (CATALOG, ONE):
        assert (await api.get(path)).status_code == 401
        token = await tenant.token(("JobsAPIConsumer",))
        r = await api.get(path, headers=bearer(token))
        assert r.status_code == 403, r.text
