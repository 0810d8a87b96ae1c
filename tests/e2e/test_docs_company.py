"""The docs page shows a company's own OpenAPI document: ``/docs?url=/api/v1/data-api/openapi.json#token=...`` in
Chromium fetches it with the caller's token, lists the endpoints' operations, drops the token from the address bar,
and executes an endpoint from "Try it out"; a ``url`` of another origin is not followed."""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from cli.demo import endpoint_file
from tests.support.data_api import bearer
from tests.support.uvicorn_server import serving

DOCUMENT = "/api/v1/data-api/openapi.json"


async def test_the_docs_page_loads_the_company_document_with_the_callers_token(stack, tenant, api, browser):
    admin = await tenant.token(("CompanyAdmin",))
    for d in yaml.safe_load(endpoint_file().read_text())["endpoints"]:
        r = await api.put(f"/api/v1/admin/endpoints/{d['namespace']}/{d['slug']}", json=d, headers=bearer(admin))
        assert r.status_code == 200, r.text
    token = await tenant.token()
    async with serving(stack, lifespan="off") as base_url:
        page = await browser.new_page()
        try:
            fetched: list = []
            page.on("request", lambda req: fetched.append(req) if urlsplit(req.url).path == DOCUMENT else None)
            await page.goto(f"{base_url}/docs?url={DOCUMENT}#token={token}")
            await page.get_by_text("/api/v1/data-api/default/vendas-por-regiao/execute").wait_for(timeout=20_000)
            assert await page.get_by_text("/api/v1/data-api/default/relatorio-mensal/jobs/{job_id}").count() >= 1
            assert fetched and (await fetched[0].all_headers())["authorization"] == f"Bearer {token}"
            assert "token" not in page.url

            # Try it out: the call from the page carries the token too.
            await page.get_by_text("/api/v1/data-api/default/vendas-por-regiao/execute").click()
            await page.get_by_role("button", name="Try it out").click()
            await page.locator("textarea.body-param__text").fill(
                '{"parameter_values": {"data_inicio": "2026-01-01", "regiao": "Sul"}}')
            async with page.expect_response(lambda r: r.url.endswith("/vendas-por-regiao/execute")) as answer:
                await page.get_by_role("button", name="Execute", exact=True).click()
            response = await answer.value
            assert response.status == 200, await response.text()
            assert (await response.json())["rows"][0]["regiao"] == "Sul"
        finally:
            await page.close()

        # Only a path of this origin is loaded: another origin's URL falls back to the API's own document.
        page = await browser.new_page()
        try:
            urls: list[str] = []
            page.on("request", lambda req: urls.append(req.url))
            await page.goto(f"{base_url}/docs?url=https://evil.example/x.json#token={token}")
            await page.get_by_text("/api/v1/admin/endpoints", exact=True).first.wait_for(timeout=20_000)
            assert all(urlsplit(u).hostname == "127.0.0.1" for u in urls), urls
        finally:
            await page.close()
