"""The real ``dataapi`` console script, run as a subprocess against its own var dir and SQLite store.

The tests of this module share one store and run in order, each building on what the previous ones
created, as an operator's session at a terminal would. Each run costs about a second of imports, so
refusals that change nothing run side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from activities.duck.databases import CompanyDatabases
from api.app import create_app
from dataapi.data_api.definitions import specs_of
from dataapi.data_api.endpoints import find_endpoint
from dataapi.data_api.param_values import coerce, to_bind
from dataapi.db import make_engine, session_scope
from dataapi.identity.service import get_company
from dataapi.settings import Settings

DATAAPI = Path(sys.executable).parent / "dataapi"

ENDPOINTS_YAML = """\
company: acme2
endpoints:
  - namespace: default
    slug: totais
    execution_mode: sync
    max_rows: 100
    sql: |
      SELECT regiao, CAST(SUM(valor) AS DECIMAL(18, 2)) AS total FROM t
      WHERE ($regiao IS NULL OR regiao = $regiao) GROUP BY regiao ORDER BY regiao
    parameters:
      - {name: regiao, type: enum, allowed_values: [Norte, Sul]}
"""


class Cli:
    def __init__(self, root: Path):
        self.root = root
        self.var = root / "var"
        self.database_url = f"sqlite:///{self.var / 'dataapi.db'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_")}
        self.env.update(DATAAPI_VAR_DIR=str(self.var), DATAAPI_DATABASE_URL=self.database_url)

    def _start(self, args) -> subprocess.Popen:
        return subprocess.Popen([str(DATAAPI), *args], cwd=self.root, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run_all(self, *commands: tuple[str, ...]) -> list[tuple[int, str, str]]:
        procs = [self._start(args) for args in commands]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            results.append((p.returncode, out, err))
        return results

    def ok(self, *args: str) -> str:
        ((code, out, err),) = self.run_all(args)
        assert code == 0, f"dataapi {' '.join(args)}: {code}\n{out}\n{err}"
        return out

    def fail_all(self, *cases: tuple[tuple[str, ...], str]) -> None:
        """Each command exits 2 with one ``dataapi: error:`` line on stderr holding the text, no traceback."""
        for (args, says), (code, out, err) in zip(cases, self.run_all(*(a for a, _ in cases)), strict=True):
            assert code == 2, f"dataapi {' '.join(args)}: {code}\n{out}\n{err}"
            assert "Traceback" not in out + err, err
            lines = err.strip().splitlines()
            if says.startswith("argparse:"):  # argparse's own refusal: usage, then one error line
                assert lines[-1].startswith("dataapi ") and says.removeprefix("argparse:") in lines[-1], err
                continue
            assert len(lines) == 1 and lines[0].startswith("dataapi: error: "), err
            assert says in lines[0], lines[0]

    def settings(self) -> Settings:
        return Settings(var_dir=self.var, database_url=self.database_url)


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    cli = Cli(tmp_path_factory.mktemp("cli"))
    assert "latest revision" in cli.ok("db", "upgrade")
    return cli


@pytest.fixture
async def api(cli):
    engine = make_engine(cli.database_url)
    app = create_app(cli.settings(), engine)  # the same var dir: the same secret-key file as the CLI
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c
    engine.dispose()


def test_companies_and_users(cli):
    assert cli.ok("companies", "create", "acme2").strip() == "created company acme2"
    out = cli.ok("users", "create", "--company", "acme2", "--name", "erp", "--policy", "DataAPIConsumer")
    assert "erp" in out and "DataAPIConsumer" in out
    cli.fail_all(
        (("companies", "create", "Bad_Slug"), "kebab-case"),
        (("companies", "create", "acme2"), "already exists"),
        (("users", "create", "--company", "acme2", "--name", "y", "--policy", "Superuser"),
         "argparse:invalid choice: 'Superuser'"),
    )


async def test_keys_log_in_until_revoked_or_disabled(cli, api):
    create = ("keys", "create", "--company", "acme2", "--user", "erp", "--json")
    outputs = [out for _, out, _ in cli.run_all(create, create)]
    first, second = (json.loads(out) for out in outputs)
    for out, creds in zip(outputs, (first, second), strict=True):
        assert out.count("\n") == 1, "exactly one JSON object, on one line"
        assert list(creds) == ["company_slug", "api_key", "api_secret"] and creds["company_slug"] == "acme2"
        r = await api.post("/api/v1/auth/api-key", json=creds)
        assert r.status_code == 200, r.text
        assert r.json()["user"]["name"] == "erp" and r.json()["user"]["policies"] == ["DataAPIConsumer"]

    assert first["api_key"] in cli.ok("keys", "revoke", first["api_key"])
    r = await api.post("/api/v1/auth/api-key", json=first)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    assert (await api.post("/api/v1/auth/api-key", json=second)).status_code == 200

    assert "disabled" in cli.ok("users", "disable", "--company", "acme2", "--name", "erp")
    assert (await api.post("/api/v1/auth/api-key", json=second)).status_code == 401
    cli.fail_all(
        (("keys", "revoke", "s42_aaaaaaaaaaaaaaaaaaaa"), "does not exist"),
        (("keys", "create", "--company", "acme2", "--user", "ninguem", "--json"), "does not exist"),
    )


def test_endpoints_apply_is_idempotent_and_refuses_broken_files(cli):
    path = cli.root / "endpoints.yaml"
    path.write_text(ENDPOINTS_YAML)
    # table t is not loaded yet: the SQL does not bind, nothing is written
    cli.fail_all((("endpoints", "apply", str(path)), "Table with name t does not exist"))
    assert cli.ok("endpoints", "list", "--company", "acme2").strip() == ""
    out = cli.ok("endpoints", "apply", "--dry-run", "--no-validate", str(path)).strip().splitlines()
    assert out[0].startswith("warning: acme2:default/totais: the SQL was not checked")
    assert out[1:] == ["would create acme2:default/totais (sync)"]
    assert cli.ok("endpoints", "list", "--company", "acme2").strip() == "", "--dry-run writes nothing"
    # saved before its table is loaded: explicitly, with a warning
    out = cli.ok("endpoints", "apply", "--no-validate", str(path)).strip().splitlines()
    assert out[0].startswith("warning: ") and out[1:] == ["created acme2:default/totais (sync)"]
    assert cli.ok("endpoints", "apply", "--no-validate", str(path)).strip().endswith(
        "updated acme2:default/totais (sync)")

    broken = {
        "syntax": ("company: acme2\nendpoints:\n  - slug: [unclosed\n", "cannot read"),
        "slug": ("company: acme2\nendpoints:\n  - {slug: Mau_Slug, sql: SELECT 1}\n", "endpoint #1: 'slug'"),
        "param": ("company: acme2\nendpoints:\n  - {slug: ok, sql: SELECT 1}\n  - {slug: ok2, sql: 'SELECT $x'}\n",
                  "endpoint #2: the SQL uses '$x'"),
    }
    cases = []
    for name, (content, says) in broken.items():
        (cli.root / f"{name}.yaml").write_text(content)
        cases.append((("endpoints", "apply", str(cli.root / f"{name}.yaml")), says))
    cli.fail_all(*cases, (("endpoints", "apply", str(cli.root / "nao-existe.yaml")), "No such file"))

    listed = cli.ok("endpoints", "list", "--company", "acme2").strip().splitlines()
    assert listed == ["default/totais\tsync\tactive\tregiao:enum"], "a broken file must change nothing"


def test_data_load_then_the_endpoint_runs(cli):
    csv = cli.root / "t.csv"
    csv.write_text("regiao,valor\nSul,10.50\nNorte,1.25\nSul,4.00\n")
    assert "loaded 3 rows into acme2.t" in cli.ok("data", "load", "--company", "acme2", "--table", "t", str(csv))
    path = cli.root / "endpoints.yaml"
    assert cli.ok("endpoints", "apply", "--dry-run", str(path)).strip() == \
        "would update acme2:default/totais (sync): regiao VARCHAR, total DECIMAL(18,2)"
    assert cli.ok("endpoints", "apply", str(path)).strip() == "updated acme2:default/totais (sync)"
    misspelt = cli.root / "misspelt.yaml"
    misspelt.write_text(ENDPOINTS_YAML.replace("SUM(valor)", "SUM(valr)"))
    cli.fail_all((("endpoints", "apply", str(misspelt)), 'Candidate bindings: "valor" (line 1, column 25)'))

    engine = make_engine(cli.database_url)
    try:
        with session_scope(engine) as s:
            endpoint = find_endpoint(s, get_company(s, "acme2").id, "default", "totais")
            sql, specs = endpoint.sql, specs_of(endpoint)
    finally:
        engine.dispose()
    databases = CompanyDatabases(cli.settings().resolved_data_dir)
    result = databases.run("acme2", sql, to_bind(specs, coerce(specs, {"regiao": "Sul"})), 100)
    assert json.loads(result.rows_json) == [{"regiao": "Sul", "total": 14.5}]
    assert databases.run("acme2", sql, to_bind(specs, coerce(specs, {})), 100).row_count == 2

    cli.fail_all(
        (("data", "load", "--company", "acme2", "--table", "t", str(cli.root / "nao-existe.csv")), "cannot load"),
        (("data", "load", "--company", "nao-existe", "--table", "t", str(csv)), "does not exist"),
    )


def test_share_contexts_create(cli):
    out = cli.ok("share-contexts", "create", "--company", "acme2", "--user", "erp", "--endpoint", "default/totais",
                 "--rules", '{"regiao": {"allowed": ["Sul"]}}')
    row = json.loads(out)
    assert row["user"] == "erp" and row["endpoint"] == "default/totais" and row["api_key"] is None
    assert row["rules"] == {"regiao": {"allowed": ["Sul"]}} and isinstance(row["id"], int)
    base = ("share-contexts", "create", "--company", "acme2")
    cli.fail_all(
        ((*base, "--user", "erp", "--rules", "{not json"), "--rules is not JSON"),
        ((*base, "--user", "erp", "--endpoint", "default/totais", "--rules", '{"regiao": {"pinned": "Leste"}}'),
         "regiao"),
    )
