"""Endpoint SQL cannot call DuckDB's introspection functions (server paths, settings, secrets): refused when the
endpoint is saved, and at execution for SQL stored before (real DuckDB, real API over ASGI, real Temporal)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from activities.duck.databases import CompanyDatabases
from activities.duck.errors import QueryFailed, SqlRefused
from dataapi.data_api import sqlguard
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import find_endpoint
from dataapi.data_api.params import DefinitionError
from dataapi.db import session_scope
from dataapi.models import Endpoint
from tests.support.data_api import Tenant, execute, wait_job

# Each reveals a server path, a setting, a secret or the catalog of the instance, or runs SQL given as text.
REFUSED = {
    "current_setting": "SELECT current_setting('allowed_directories') AS v",
    "current_setting ": "SELECT current_setting('temp_directory') AS v",
    "current_setting  ": "SELECT current_setting('home_directory') AS v",
    "duckdb_settings": "SELECT name, value FROM duckdb_settings()",
    "duckdb_databases": "SELECT path FROM duckdb_databases()",
    "duckdb_extensions": "SELECT install_path FROM duckdb_extensions()",
    "duckdb_secrets": "SELECT * FROM duckdb_secrets()",
    "duckdb_temporary_files": "SELECT * FROM duckdb_temporary_files()",
    "duckdb_memory": "FROM duckdb_memory()",
    "pragma_database_list": "SELECT * FROM pragma_database_list",
    "pragma_version": "SELECT * FROM pragma_version()",
    "pragma_platform": "SELECT * FROM pragma_platform()",
    "pg_settings": "SELECT * FROM pg_catalog.pg_settings",
    "pg_database": "SELECT * FROM pg_database",
    "getenv": "SELECT getenv('HOME') AS v",
    "which_secret": "SELECT * FROM which_secret('s3://bucket/x', 's3')",
    "read_text": "SELECT content FROM read_text('/etc/hostname')",
    "read_blob": "SELECT content FROM read_blob('/etc/hostname')",
    "glob": "SELECT file FROM glob('/*')",
    "query": "SELECT * FROM query('SELECT current_setting(''temp_directory'')')",
    "json_execute_serialized_sql": "SELECT * FROM json_execute_serialized_sql('{}')",
    # Hidden in the corners of a statement: method-call syntax, lambdas, CTEs, windows, upper case, quoted,
    # schema-qualified.
    "method call": "SELECT 'temp_directory'.current_setting() AS v",
    "lambda": "SELECT list_transform([1], lambda x: current_setting('temp_directory')) AS v",
    "cte": "WITH s AS (SELECT * FROM duckdb_settings()) SELECT name FROM s",
    "window": "SELECT count(*) OVER (PARTITION BY CURRENT_SETTING('threads')) AS n",
    "quoted": "SELECT \"current_setting\"('temp_directory') AS v",
    "qualified": "SELECT system.main.current_setting('temp_directory') AS v",
    "subquery": "SELECT 1 AS a WHERE EXISTS (SELECT 1 FROM duckdb_databases())",
    "describe": "DESCRIBE vendas",
    "show": "SHOW databases",
    "summarize": "SUMMARIZE vendas",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=list(REFUSED))
def test_refused_at_save_naming_the_function(sql):
    with pytest.raises(DefinitionError, match=r"'sql': .*not allowed in endpoint SQL") as e:
        parse_definition({"slug": "espiao", "sql": sql}, 100, 1000)
    assert "/" not in e.value.message.split("'sql':")[1]  # names the function, not a path


@pytest.mark.parametrize("sql", REFUSED.values(), ids=list(REFUSED))
def test_refused_at_execution(tmp_path, sql):
    dbs = CompanyDatabases(tmp_path / "data", memory_limit="256MB")
    with pytest.raises(SqlRefused, match="not allowed in endpoint SQL"):
        dbs.run("acme", sql, {}, 10)


def test_ordinary_sql_is_untouched(tmp_path):
    dbs = CompanyDatabases(tmp_path / "data", memory_limit="256MB")
    path = dbs.files_dir("acme") / "x.csv"
    path.write_text("a,b\n1,2\n")
    for sql in ["SELECT 1 AS a", f"SELECT * FROM read_csv('{path}')", "SELECT current_date AS d, now() AS t",
                "SELECT repeat('x', 3) AS s, list_transform([1, 2], lambda x: x + 1) AS l",
                "WITH r AS (SELECT range AS n FROM range(3)) SELECT sum(n) OVER () AS s FROM r"]:
        sqlguard.check(sql)
        parse_definition({"slug": "ok", "sql": sql}, 100, 1000)
        dbs.run("acme", sql, {}, 10)


@pytest.mark.parametrize("sql, message", [
    ("SELEC 1", "syntax error"),
    ("SELECT 1; SELECT 2", "single SELECT"),
    ("PRAGMA database_list", "single SELECT"),
    ("COPY (SELECT 1) TO '/tmp/x.csv'", "single SELECT"),
    ("CALL pragma_version()", "single SELECT"),
])
def test_what_cannot_be_parsed_as_one_select_is_refused_at_save(sql, message):
    with pytest.raises(DefinitionError, match=message):
        parse_definition({"slug": "x", "sql": sql}, 100, 1000)


async def test_admin_api_refuses_at_save(tenant, api):
    token = await tenant.token(("CompanyAdmin",))
    r = await api.post("/api/v1/admin/endpoints", headers={"Authorization": f"Bearer {token}"},
                       json={"namespace": "default", "slug": "espiao",
                             "sql": "SELECT current_setting('allowed_directories') AS v"})
    assert 400 <= r.status_code < 500, r.text
    assert "function current_setting is not allowed in endpoint SQL" in r.json()["message"]


def _store_unchecked(tenant: Tenant, slug: str, sql: str, mode: str = "sync", parameters: list | None = None):
    """An endpoint saved before the check existed: written with a harmless SQL, then changed in the store."""
    tenant.endpoint(slug=slug, sql="SELECT 1 AS v", execution_mode=mode)
    with session_scope(tenant.ctx.engine) as s:
        endpoint = find_endpoint(s, tenant.company_id, "default", slug)
        s.exec(update(Endpoint).where(Endpoint.id == endpoint.id).values(
            sql=sql, parameters=json.dumps(parameters or [])))


@pytest.mark.parametrize("name", ["current_setting", "duckdb_settings", "duckdb_databases", "pragma_database_list",
                                  "getenv", "read_text"])
async def test_stored_sql_is_refused_at_execution_with_a_4xx(tenant, api, name):
    _store_unchecked(tenant, "antigo", REFUSED[name])
    token = await tenant.token()
    r = await execute(api, token, "default/antigo")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "SQL_NOT_ALLOWED" and f"{name} is not allowed in endpoint SQL" in body["message"]
    assert "/" not in body["message"]


async def test_stored_sql_fails_an_async_job_with_the_same_message(tenant, api):
    _store_unchecked(tenant, "antigo-async", REFUSED["duckdb_databases"], mode="async")
    token = await tenant.token()
    r = await execute(api, token, "default/antigo-async")
    assert r.status_code == 202, r.text
    job = await wait_job(api, token, r.json()["polling_url"])
    assert job["status"] == "failed" and "function duckdb_databases is not allowed" in job["error"]


async def test_stored_pattern_that_is_not_re2_fails_closed(tenant, api):
    """A pattern saved when patterns were Python's re (a lookahead) is kept, but no value is ever checked
    against it by a backtracking engine: values for it are refused (422), executions without one still run."""
    spec = {"name": "s", "type": "string", "pattern": "(?=a)a+"}
    with pytest.raises(DefinitionError, match="RE2"):
        parse_definition({"slug": "x", "sql": "SELECT $s AS v", "parameters": [spec]}, 100, 1000)
    _store_unchecked(tenant, "padrao-antigo", "SELECT coalesce($s, 'none') AS v", parameters=[spec])
    token = await tenant.token()
    r = await execute(api, token, "default/padrao-antigo", {"s": "aaa"})
    assert r.status_code == 422 and r.json()["code"] == "INVALID_PARAMETER", r.text
    assert "pattern is not supported" in r.json()["message"] and "'s'" in r.json()["message"]
    r = await execute(api, token, "default/padrao-antigo")
    assert r.status_code == 200 and r.json()["rows"] == [{"v": "none"}], r.text


def test_sql_errors_stay_query_failures(tmp_path):
    """SqlRefused is a QueryFailed: every caller that handles query failures handles it."""
    assert issubclass(SqlRefused, QueryFailed)
