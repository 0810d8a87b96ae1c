"""A company's own OpenAPI document (``GET /api/v1/data-api/openapi.json``): one typed operation per endpoint the
caller may execute, valid OpenAPI, and a client generated from it by openapi-python-client signs in and executes an
endpoint on the real stack (the app, its query worker, Temporal, the demo data)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from cli.demo import endpoint_file
from tests.support.data_api import Tenant, bearer, wait_job

DOCUMENT = "/api/v1/data-api/openapi.json"
EXECUTE = "/api/v1/data-api/default/{}/execute"


async def _saved_by_the_admin_api(tenant: Tenant, api: httpx.AsyncClient) -> None:
    """The demo endpoints saved as an admin saves them: validated on the company's data, their columns known."""
    admin = await tenant.token(("CompanyAdmin",))
    for d in yaml.safe_load(endpoint_file().read_text())["endpoints"]:
        r = await api.put(f"/api/v1/admin/endpoints/{d['namespace']}/{d['slug']}", json=d, headers=bearer(admin))
        assert r.status_code == 200, r.text


async def _document(api: httpx.AsyncClient, token: str) -> dict:
    r = await api.get(DOCUMENT, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def _schema(doc: dict, name: str) -> dict:
    """A component schema with its references resolved against the document (for jsonschema)."""
    return {**doc["components"]["schemas"][name], "components": doc["components"]}


async def test_the_document_types_each_endpoint_as_the_caller_may_execute_it(tenant, api):
    await _saved_by_the_admin_api(tenant, api)
    doc = await _document(api, await tenant.token())
    validate(doc)
    paths = doc["paths"]
    # (A sync endpoint has its job too when the server may answer it 202: Prefer: respond-async.)
    assert set(paths) - {"/api/v1/data-api/default/vendas-por-regiao/jobs/{job_id}"} == {
        "/api/v1/auth/api-key", "/api/v1/auth/refresh", EXECUTE.format("vendas-por-regiao"),
        EXECUTE.format("relatorio-mensal"), "/api/v1/data-api/default/relatorio-mensal/jobs/{job_id}"}
    schemas = doc["components"]["schemas"]
    params = schemas["DefaultVendasPorRegiaoParameters"]
    assert params["required"] == ["data_inicio"] and params["additionalProperties"] is False
    assert params["properties"]["data_inicio"]["format"] == "date"
    assert params["properties"]["regiao"]["anyOf"] == [
        {"type": "string", "enum": ["Norte", "Nordeste", "Centro-Oeste", "Sudeste", "Sul"]}, {"type": "null"}]
    assert params["properties"]["regiao"]["description"] == "Região do Brasil; todas quando ausente"
    mes = schemas["DefaultRelatorioMensalParameters"]["properties"]["mes"]
    assert mes["type"] == "string" and mes["pattern"] == r"^(?:^\d{4}-(0[1-9]|1[0-2])$)$"
    row = schemas["DefaultVendasPorRegiaoRow"]
    assert row["required"] == ["regiao", "total"]
    assert row["properties"]["regiao"]["type"] == ["string", "null"]
    assert row["properties"]["total"]["type"] == ["number", "null"]
    assert schemas["DefaultRelatorioMensalRow"]["properties"]["vendas"]["type"] == ["integer", "null"]
    sync = paths[EXECUTE.format("vendas-por-regiao")]["post"]
    assert sync["requestBody"]["required"] is True and {"200", "422"} <= set(sync["responses"])
    async_ = paths[EXECUTE.format("relatorio-mensal")]["post"]
    assert "202" in async_["responses"] and "200" not in async_["responses"]

    # The parameter schemas say what the server takes: what they accept runs, what they refuse is refused.
    p = _schema(doc, "DefaultVendasPorRegiaoParameters")
    good, bad = {"data_inicio": "2026-01-01", "regiao": "Sul"}, {"data_inicio": "2026-01-01", "regiao": "Marte"}
    jsonschema.validate(good, p)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, p)
    token = await tenant.token()
    r = await api.post(EXECUTE.format("vendas-por-regiao"), json={"parameter_values": good}, headers=bearer(token))
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), _schema(doc, "DefaultVendasPorRegiaoResult"))
    assert r.json()["rows"], "the demo data has sales in the south"
    r = await api.post(EXECUTE.format("vendas-por-regiao"), json={"parameter_values": bad}, headers=bearer(token))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_PARAMETER"

    r = await api.post(EXECUTE.format("relatorio-mensal"), json={"parameter_values": {"mes": "2026-03"}},
                       headers=bearer(token))
    assert r.status_code == 202, r.text
    job = await wait_job(api, token, r.json()["polling_url"])
    assert job["status"] == "completed", job
    jsonschema.validate(job, _schema(doc, "DefaultRelatorioMensalJob"))


async def test_share_contexts_shape_the_document(tenant, api):
    await _saved_by_the_admin_api(tenant, api)
    pinned, narrowed = tenant.user(), tenant.user()
    tenant.share(pinned[0], {"regiao": {"pinned": "Sul"}}, "default/vendas-por-regiao")
    tenant.share(narrowed[0], {"regiao": {"allowed": ["Norte", "Sul"]}})

    doc = await _document(api, await tenant.token(user=pinned))
    assert set(doc["components"]["schemas"]["DefaultVendasPorRegiaoParameters"]["properties"]) == {"data_inicio"}
    doc = await _document(api, await tenant.token(user=narrowed))
    regiao = doc["components"]["schemas"]["DefaultVendasPorRegiaoParameters"]["properties"]["regiao"]
    assert regiao["anyOf"][0]["enum"] == ["Norte", "Sul"]


async def test_the_document_needs_a_token_that_may_execute(tenant, api):
    r = await api.get(DOCUMENT)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    other = Tenant(tenant.app, api)
    doc = await _document(api, await other.token())
    assert doc["info"]["title"].endswith(other.slug) and tenant.slug not in str(doc)


def _generate(doc_path: Path, out: Path) -> str:
    """Generates a client package with openapi-python-client; returns its package name."""
    cli = Path(sys.executable).parent / "openapi-python-client"
    config = out.parent / "generator.yaml"
    config.write_text("project_name_override: company-client\npackage_name_override: company_client\n"
                      "post_hooks: []\n")
    done = subprocess.run([str(cli), "generate", "--path", str(doc_path), "--output-path", str(out),
                           "--config", str(config), "--meta", "none", "--overwrite"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    return "company_client"


async def test_a_client_generated_from_the_document_signs_in_and_executes_an_endpoint(tenant, api, tmp_path,
                                                                                     monkeypatch):
    await _saved_by_the_admin_api(tenant, api)
    _, key, secret = user = tenant.user()
    doc_path = tmp_path / "openapi.json"
    doc_path.write_text((await api.get(DOCUMENT, headers=bearer(await tenant.token(user=user)))).text)
    package = _generate(doc_path, tmp_path / "company_client")
    monkeypatch.syspath_prepend(str(tmp_path))
    generated = importlib.import_module(package)
    login_op = importlib.import_module(f"{package}.api.auth.post_api_v1_auth_api_key")
    execute_op = importlib.import_module(f"{package}.api.default.execute_default_vendas_por_regiao")
    models = importlib.import_module(f"{package}.models")
    transport = httpx.ASGITransport(app=tenant.app, raise_app_exceptions=False)

    anonymous = generated.Client(base_url="http://testserver")
    anonymous.set_async_httpx_client(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
    login_body = importlib.import_module(f"{package}.models.post_api_v1_auth_api_key_body")
    pair = await login_op.asyncio(client=anonymous, body=login_body.PostApiV1AuthApiKeyBody(
        company_slug=tenant.slug, api_key=key, api_secret=secret))
    assert pair is not None and pair.access_token

    client = generated.AuthenticatedClient(base_url="http://testserver", token=pair.access_token)
    client.set_async_httpx_client(httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                                    headers={"Authorization": f"Bearer {pair.access_token}"}))
    params = models.DefaultVendasPorRegiaoParameters.from_dict({"data_inicio": "2026-01-01"})
    body = models.ExecuteDefaultVendasPorRegiaoBody(parameter_values=params)
    response = await execute_op.asyncio_detailed(client=client, body=body)
    assert response.status_code == 200, response.content
    result = response.parsed
    assert isinstance(result, models.DefaultVendasPorRegiaoResult), result
    assert result.row_count == len(result.rows) > 0
    regions = {row.regiao for row in result.rows}
    assert regions <= {"Norte", "Nordeste", "Centro-Oeste", "Sudeste", "Sul"} and len(regions) > 1
    assert all(isinstance(row.total, float) for row in result.rows)

    # Errors come back typed too.
    stale = generated.AuthenticatedClient(base_url="http://testserver", token="not-a-token")
    stale.set_async_httpx_client(httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                                   headers={"Authorization": "Bearer not-a-token"}))
    refused = await execute_op.asyncio_detailed(client=stale, body=body)
    assert refused.status_code == 401 and isinstance(refused.parsed, models.Error)
    assert refused.parsed.code == "UNAUTHORIZED" and refused.parsed.request_id
