"""The console in a real browser, as a person uses it: log in, publish an endpoint (a mistake shown at its line,
then fixed), run it and see its rows, load a CSV, watch an async job complete and redeliver its callback, create
and revoke an integration's key; a viewer cannot reach edit pages (403) and another company's job is a 404.
Each page's screenshot is taken on the way (``conftest.Console.shots``)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
from playwright.async_api import Page, expect

from tests.e2e.conftest import Console

SQL_WITH_MISTAKE = ("SELECT produto, CAST(SUM(valor) AS DECIMAL(18, 2)) AS total\nFROM vendas\n"
                    "WHERE regiao = $regiao\nGROUP BY produtoo\nORDER BY produto")


async def shot(page: Page, console: Console, name: str) -> None:
    await page.screenshot(path=str(console.shots / f"{name}.png"), full_page=True)


async def log_in(page: Page, console: Console, name: str, company: str | None = None) -> None:
    await page.goto(f"{console.base_url}/console/login")
    login = console.login(name, company)
    await page.get_by_label("Company", exact=True).fill(login["company"])
    await page.get_by_label("User name").fill(login["name"])
    await page.get_by_label("Password", exact=True).fill(login["password"])
    await page.get_by_role("button", name="Log in").click()


async def reload_until(page: Page, check, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not reached within {within}s: {page.url}"
        await asyncio.sleep(0.5)
        await page.reload()


async def test_a_person_publishes_runs_loads_watches_and_hands_out_a_key(browser, console, receiver):
    started = time.monotonic()
    context = await browser.new_context(viewport={"width": 1366, "height": 860})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

    # Logging in
    await page.goto(f"{console.base_url}/console/")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await shot(page, console, "login")
    await log_in(page, console, "ana")
    await expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    await shot(page, console, "endpoints")

    # Publishing an endpoint: the mistake is shown at its line, then fixed
    await page.get_by_role("link", name="New endpoint").click()
    await page.get_by_label("Slug", exact=True).fill("total-por-produto")
    await page.get_by_label("Description", exact=True).fill("Total de vendas por produto numa região.")
    await page.locator("#sql").fill(SQL_WITH_MISTAKE)
    await page.get_by_label("Parameter name").first.fill("regiao")
    await page.get_by_label("Parameter type").first.select_option("string")
    await page.get_by_label("Parameter default").first.fill("Sul")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#save-error")).to_contain_text("produtoo")
    await expect(page.locator("#sql-error-at")).to_contain_text("Line 4")
    await expect(page.locator(".gutter .bad")).to_have_text("4")
    await shot(page, console, "endpoint-edit-error")
    await page.locator("#sql").fill(SQL_WITH_MISTAKE.replace("produtoo", "produto"))
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved")

    # Running it: the rows as a table, the API's JSON, a curl
    await page.get_by_label(re.compile("^regiao")).fill("Norte")
    await page.get_by_role("button", name="Run", exact=True).click()
    await expect(page.locator("#result-table tbody tr")).to_have_count(8)
    assert json.loads(await page.locator("#api-json").text_content())["row_count"] == 8
    await expect(page.locator("#curl")).to_contain_text("/api/v1/data-api/default/total-por-produto/execute")
    await shot(page, console, "endpoint-run")

    # Loading a CSV into a new table
    csv = console.topo.root / "metas.csv"
    csv.write_text("regiao,meta\nSul,1000\nNorte,2000\nSudeste,3000\n")
    await page.get_by_role("link", name="Data", exact=True).click()
    await page.get_by_label("CSV, Parquet or JSON file").set_input_files(str(csv))
    await page.get_by_label("Table", exact=True).fill("metas")
    await page.get_by_role("button", name="Load").click()
    await expect(page.locator("#load-notice")).to_contain_text("Loaded 3 rows into metas")
    await expect(page.locator("#load-history")).to_contain_text("metas.csv")
    await expect(page.locator("summary", has_text="metas")).to_contain_text("3 rows")
    await shot(page, console, "data")

    # An async job with a callback: it completes, its delivery is logged, and Redeliver sends it again
    await page.goto(f"{console.base_url}/console/endpoints/default/relatorio-mensal")
    await page.get_by_label(re.compile("^mes")).fill("2026-03")
    await page.get_by_label(re.compile("^Callback URL")).fill(receiver.url("localhost"))
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.get_by_role("link", name=re.compile("^[0-9a-f]{24}$")).click()

    async def delivered() -> bool:
        return (await page.locator("#job-status").text_content() == "completed"
                and await page.locator(".badge", has_text="delivered").count() > 0)

    await reload_until(page, delivered)
    await expect(page.locator("#result-table")).to_be_visible()
    await page.get_by_role("button", name="Redeliver").click()
    await expect(page.get_by_role("status")).to_contain_text("A new delivery started")
    for _ in range(60):
        if len(receiver.requests) >= 2:
            break
        await asyncio.sleep(0.25)
    assert len(receiver.requests) == 2
    await reload_until(page, lambda: _count(page, ".badge:text-is('delivered')", 2))
    assert len(receiver.requests) == 2, "a reload of the page delivers nothing again"
    await shot(page, console, "job")
    await page.get_by_role("link", name="Jobs", exact=True).click()
    await expect(page.locator("#data-jobs-table")).to_contain_text("relatorio-mensal")
    await shot(page, console, "jobs")

    # A key for the integration user: shown once, works, then revoked and refused
    await page.get_by_role("link", name="Keys and users", exact=True).click()
    await page.get_by_role("button", name="Create a key for erp").click()
    key = json.loads(await page.locator("#new-key").text_content())
    await shot(page, console, "users")
    async with httpx.AsyncClient(base_url=console.base_url) as http:
        assert (await http.post("/api/v1/auth/api-key", json=key)).status_code == 200
        await page.get_by_role("button", name=f"Revoke {key['api_key']}").click()
        await expect(page.get_by_role("status")).to_contain_text(f"Revoked {key['api_key']}")
        assert (await http.post("/api/v1/auth/api-key", json=key)).status_code == 401

    for name in ("repositories", "settings"):
        await page.get_by_role("link", name=name.capitalize(), exact=True).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(name.capitalize())
        await shot(page, console, name)
    job_url = await _first_job_url(page, console)
    await context.close()

    # A viewer runs endpoints but cannot reach edit pages; another company's job does not exist for its admin
    viewer = await browser.new_context()
    page = await viewer.new_page()
    await log_in(page, console, "caio")
    await page.goto(f"{console.base_url}/console/endpoints/default/vendas-por-regiao")
    await page.get_by_label(re.compile("^data_inicio")).fill("2025-06-01")
    await page.get_by_role("button", name="Run", exact=True).click()
    await expect(page.locator("#result-table tbody tr")).to_have_count(5)
    assert await page.get_by_role("link", name="Edit").count() == 0
    for path in ("/console/endpoints/new", "/console/endpoints/default/vendas-por-regiao/edit", "/console/users"):
        response = await page.goto(console.base_url + path)
        assert response is not None and response.status == 403, path
    await shot(page, console, "forbidden")
    await viewer.close()

    other = await browser.new_context()
    page = await other.new_page()
    await log_in(page, console, "olga", company=console.other)
    response = await page.goto(job_url)
    assert response is not None and response.status == 404
    await other.close()
    print(f"\nconsole e2e: {time.monotonic() - started:.1f} s in the browser")


async def _count(page: Page, selector: str, n: int) -> bool:
    return await page.locator(selector).count() >= n


async def _first_job_url(page: Page, console: Console) -> str:
    await page.goto(f"{console.base_url}/console/jobs")
    href = await page.locator("#data-jobs-table a").first.get_attribute("href")
    assert href is not None
    return console.base_url + href
