"""Validation at save (``dataapi.data_api.validate``) on real company databases: what binds, what it reports,
and that it shares the query path's hardened instance of the file."""

from __future__ import annotations

import pytest

from activities.duck.databases import CompanyDatabases
from activities.duck.versions import load_file
from dataapi.data_api.params import ParamSpec
from dataapi.data_api.validate import SqlProblem, check_placeholders, describe_sql


@pytest.fixture
def data_dir(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("regiao,valor,dia\nSul,10.5,2026-01-02\nNorte,1,2026-01-03\n")
    load_file(tmp_path / "data", "acme", "t", csv)
    return tmp_path / "data"


def test_columns_are_named_and_typed_as_results_are(data_dir):
    specs = [ParamSpec("desde", "date", default="2026-01-01"), ParamSpec("regiao", "enum",
                                                                        allowed_values=("Sul", "Norte"))]
    sql = "SELECT regiao, sum(valor) AS total, max(dia) AS dia, 1 AS Dia FROM t WHERE dia >= $desde " \
          "AND regiao = $regiao GROUP BY regiao"
    assert describe_sql(data_dir, "acme", sql, specs) == [
        {"name": "regiao", "type": "varchar", "duckdb_type": "VARCHAR"},
        {"name": "total", "type": "double", "duckdb_type": "DOUBLE"},
        {"name": "dia", "type": "date", "duckdb_type": "DATE"},
        {"name": "Dia_1", "type": "integer", "duckdb_type": "INTEGER"},  # as the query path dedups
    ]
    # a parameter without a default binds NULL, as when a caller omits it
    assert describe_sql(data_dir, "acme", "SELECT count(*) AS n FROM t WHERE $r IS NULL OR regiao = $r",
                        [ParamSpec("r", "string")]) == [{"name": "n", "type": "bigint", "duckdb_type": "BIGINT"}]


@pytest.mark.parametrize("sql, says, line, column", [
    ("SELECT sum(valr) FROM t", 'Candidate bindings: "valor"', 1, 12),
    ("SELECT *\nFROM t\nJOIN u USING (regiao)", "Table with name u does not exist", 3, 6),
    ("SELECT * FROM t; DELETE FROM t", "single SELECT", None, None),
    ("INSERT INTO t VALUES ('x', 1, NULL)", "single SELECT", None, None),
])
def test_what_does_not_bind_is_reported_where_duckdb_points(data_dir, sql, says, line, column):
    with pytest.raises(SqlProblem) as e:
        describe_sql(data_dir, "acme", sql, [])
    assert says in e.value.message and (e.value.line, e.value.column) == (line, column)
    assert CompanyDatabases(data_dir).run("acme", "SELECT count(*) AS n FROM t", {}, 10).row_count == 1


def test_server_paths_are_scrubbed_and_files_outside_the_company_refused(data_dir, tmp_path):
    (tmp_path / "segredo.csv").write_text("a\n1\n")
    with pytest.raises(SqlProblem) as e:
        describe_sql(data_dir, "acme", f"SELECT * FROM read_csv('{data_dir}/outra/files/x.csv')", [])
    assert str(data_dir) not in e.value.message and "<data>/outra/files/x.csv" in e.value.message
    with pytest.raises(SqlProblem, match="disabled by configuration"):
        describe_sql(data_dir, "acme", f"SELECT * FROM read_csv('{tmp_path / 'segredo.csv'}')", [])


def test_before_the_first_load_tables_are_missing(tmp_path):
    with pytest.raises(SqlProblem, match="Table with name t does not exist"):
        describe_sql(tmp_path / "data", "nova", "SELECT * FROM t", [])
    assert describe_sql(tmp_path / "data", "nova", "SELECT 1 AS x", []) == [
        {"name": "x", "type": "integer", "duckdb_type": "INTEGER"}]


@pytest.mark.parametrize("first", ["validation", "query"])
def test_validation_and_queries_share_the_hardened_instance(data_dir, first):
    dbs = CompanyDatabases(data_dir, memory_limit="256MB")
    if first == "query":
        assert dbs.run("acme", "SELECT count(*) AS n FROM t", {}, 10).row_count == 1
    assert describe_sql(data_dir, "acme", "SELECT regiao FROM t", [], memory_limit="256MB")[0]["name"] == "regiao"
    assert dbs.run("acme", "SELECT count(*) AS n FROM t", {}, 10).row_count == 1
    assert describe_sql(data_dir, "acme", "SELECT regiao FROM t", [], memory_limit="256MB")[0]["name"] == "regiao"


def test_placeholders_match_the_declared_parameters():
    check_placeholders("SELECT $a, '$b' AS s -- $c", [ParamSpec("a", "integer")])
    with pytest.raises(SqlProblem, match="no parameter 'b'"):
        check_placeholders("SELECT $a + $b", [ParamSpec("a", "integer")])
    with pytest.raises(SqlProblem, match="'b' is declared but the SQL does not use"):
        check_placeholders("SELECT $a", [ParamSpec("a", "integer"), ParamSpec("b", "integer")])
    check_placeholders("SELECT $a", [ParamSpec("a", "integer"), ParamSpec("b", "integer")], unused=False)
    with pytest.raises(SqlProblem, match="positional"):
        check_placeholders("SELECT $1", [])
