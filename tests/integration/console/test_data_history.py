"""The Data page's load history is the loader's own: loads made with ``dataapi data load`` (the command's ``main``)
and uploads from the console are listed together, newest first, with their modes and counts; another company's
loads are not."""

from __future__ import annotations

import re

import pytest

from cli.main import main
from dataapi.settings import get_settings
from tests.integration.console.conftest import csrf_of

ROW_RE = re.compile(r"<tr>(.*?)</tr>", re.S)
CELL_RE = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


@pytest.fixture
def dataapi(app, monkeypatch, capsys):
    """``run(*args)``: the ``dataapi`` command's ``main`` on the app's store and data folder; its stdout."""
    settings = app.state.ctx.settings
    monkeypatch.setenv("DATAAPI_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("DATAAPI_DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()
    assert get_settings().resolved_data_dir == settings.resolved_data_dir

    def run(*args: str) -> str:
        code = main(list(args))
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    yield run
    get_settings.cache_clear()


def history_of(html: str) -> list[list[str]]:
    """The rows of the page's load history, as the text of their cells."""
    m = re.search(r'<table class="grid" id="load-history">(.*?)</table>', html, re.S)
    assert m, "no load history on the page"
    body = m.group(1).split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in CELL_RE.findall(row)] for row in ROW_RE.findall(body)]


async def test_cli_and_console_loads_are_listed_together_newest_first(dataapi, browser_for, make_human, tmp_path):
    manager = make_human(["VisualizationManager"])
    slug = manager.company
    first = tmp_path / "metas.csv"
    first.write_text("regiao,meta\nSul,1\nNorte,2\nSudeste,3\n")
    assert f"loaded 3 rows into {slug}.metas (create, db-000001.duckdb)" in dataapi(
        "data", "load", "--company", slug, "--table", "metas", str(first))

    async with browser_for(manager) as c:
        csrf = csrf_of((await c.get("/console/data")).text)
        r = await c.post("/console/data", data={"csrf": csrf, "table": "metas", "mode": "append"},
                         files={"file": ("mais.csv", b"regiao,meta\nOeste,4\nLeste,5\n", "text/csv")})
        assert r.status_code == 200 and "Loaded 2 rows into metas (append)" in r.text

        more = tmp_path / "extra.csv"
        more.write_text("regiao,meta\nCentro,6\n")
        assert "loaded 1 rows into" in dataapi("data", "load", "--company", slug, "--table", "metas", "--append",
                                               str(more))
        assert "(replace, db-000004.duckdb)" in dataapi("data", "load", "--company", slug, "--table", "metas",
                                                        str(more))

        page = await c.get("/console/data")
        assert page.status_code == 200
        rows = history_of(page.text)
        # At, Version, Table, Mode, Rows loaded, Rows after, File, Size, By
        assert [r[1:8] for r in rows] == [
            ["db-000004.duckdb", "metas", "replace", "1", "1", "extra.csv", f"{more.stat().st_size} Bytes"],
            ["db-000003.duckdb", "metas", "append", "1", "6", "extra.csv", f"{more.stat().st_size} Bytes"],
            ["db-000002.duckdb", "metas", "append", "2", "5", "mais.csv", "28 Bytes"],
            ["db-000001.duckdb", "metas", "create", "3", "3", "metas.csv", f"{first.stat().st_size} Bytes"],
        ]
        assert rows[2][8] == f"{manager.name} (console)"
        assert [r[8].endswith("(cli)") for r in rows] == [True, True, False, True]
        assert re.search(r"<strong>metas</strong> <span class=\"hint\">1 rows", page.text)

    other = make_human(["VisualizationManager"])
    async with browser_for(other) as c:
        page = await c.get("/console/data")
        assert 'id="load-history"' not in page.text and "No loads yet." in page.text
