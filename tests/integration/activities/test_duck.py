import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest

from activities.duck import databases, serialise, shapes
from activities.duck.databases import CompanyDatabases
from activities.duck.errors import LoadFailed, QueryFailed, QueryInterrupted
from activities.duck.versions import load_file
from dataapi.json_values import unique_names


@pytest.fixture
def dbs(tmp_path) -> CompanyDatabases:
    return CompanyDatabases(tmp_path / "data", memory_limit="256MB", threads=2)


def load_csv(dbs, slug, table, text, tmp_path, replace=True) -> int:
    path = tmp_path / f"{slug}-{table}-{time.monotonic_ns()}.csv"
    path.write_text(text)
    return load_file(dbs.data_dir, slug, table, path, replace=replace)


def rows(result) -> list[dict]:
    return orjson.loads(result.rows_json)


@pytest.fixture
def vendas(dbs, tmp_path) -> CompanyDatabases:
    load_csv(dbs, "acme", "vendas", "regiao,total\nSul,150000.00\nNorte,20.5\nLeste,7\n", tmp_path)
    return dbs


# --- results ------------------------------------------------------------------------------------------

TYPES_SQL = """
SELECT 'Sul' AS v, 1::TINYINT AS ti, 2::SMALLINT AS si, 3::INTEGER AS i, 4::UTINYINT AS ut, 5::USMALLINT AS us,
       6::UINTEGER AS ui, 7::BIGINT AS bi, 9223372036854775807::BIGINT AS bmax, 18446744073709551615::UBIGINT AS ubmax,
       170141183460469231731687303715884105727::HUGEINT AS hmax, 12::HUGEINT AS hsmall,
       150000.00::DECIMAL(18,2) AS d, 1.5::FLOAT AS f, 2.25::DOUBLE AS dbl, 'nan'::DOUBLE AS nan,
       'inf'::DOUBLE AS inf, DATE '2026-01-31' AS dt, TIMESTAMP '2026-01-31 10:30:00' AS ts,
       TIMESTAMPTZ '2026-01-31 10:30:00+02' AS tstz, '2026-01-31 10:30:00.123456789'::TIMESTAMP_NS AS tsns,
       '2026-01-31 10:30:00'::TIMESTAMP_S AS tss, '2026-01-31 10:30:00.5'::TIMESTAMP_MS AS tsms, true AS b,
       TIME '10:30:00' AS tm, '10:30:00+02'::TIMETZ AS tmtz, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID AS u,
       'ab'::BLOB AS bl, '{"a": [1, 2]}'::JSON AS j, [1, 2] AS l, {'k': 1.5::DECIMAL(3,1)} AS s,
       MAP([1], ['x']) AS m, [1, 2]::INTEGER[2] AS arr, INTERVAL 1 DAY + INTERVAL 2 HOUR AS iv,
       'a'::ENUM('a', 'b') AS e, NULL::INTEGER AS n, 'x'::BIT AS bit_not_a_bit
"""


def test_every_type_has_a_name_and_a_json_value(dbs):
    result = dbs.run("acme", TYPES_SQL.replace("'x'::BIT", "'101'::BIT"), {}, 10)
    types = {c["name"]: c["type"] for c in result.columns}
    assert types == {
        "v": "varchar", "ti": "integer", "si": "integer", "i": "integer", "ut": "integer", "us": "integer",
        "ui": "bigint", "bi": "bigint", "bmax": "bigint", "ubmax": "bigint", "hmax": "bigint", "hsmall": "bigint",
        "d": "decimal", "f": "double", "dbl": "double", "nan": "double", "inf": "double", "dt": "date",
        "ts": "timestamp", "tstz": "timestamp", "tsns": "timestamp", "tss": "timestamp", "tsms": "timestamp",
        "b": "boolean", "tm": "time", "tmtz": "time", "u": "uuid", "bl": "blob", "j": "json", "l": "json",
        "s": "json", "m": "json", "arr": "json", "iv": "interval", "e": "varchar", "n": "integer",
        "bit_not_a_bit": "bit",
    }
    assert rows(result) == [{
        "v": "Sul", "ti": 1, "si": 2, "i": 3, "ut": 4, "us": 5, "ui": 6, "bi": 7, "bmax": 9223372036854775807,
        "ubmax": "18446744073709551615", "hmax": "170141183460469231731687303715884105727", "hsmall": 12,
        "d": 150000.0, "f": 1.5, "dbl": 2.25, "nan": None, "inf": None, "dt": "2026-01-31",
        "ts": "2026-01-31T10:30:00", "tstz": "2026-01-31T08:30:00+00:00", "tsns": "2026-01-31T10:30:00.123456",
        "tss": "2026-01-31T10:30:00", "tsms": "2026-01-31T10:30:00.500000", "b": True, "tm": "10:30:00",
        "tmtz": "10:30:00+02:00", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "bl": "YWI=",
        "j": {"a": [1, 2]}, "l": [1, 2], "s": {"k": 1.5}, "m": {"1": "x"}, "arr": [1, 2], "iv": "P1DT7200S",
        "e": "a", "n": None, "bit_not_a_bit": "101",
    }]
    assert b'"d":150000.0,' in result.rows_json  # a JSON number, as in the guide's example
    assert [c["name"] for c in result.columns] == list(rows(result)[0])  # column order kept
    assert (result.row_count, result.truncated) == (1, False)


def test_nested_values_orjson_refuses_take_the_slow_path(dbs):
    result = dbs.run("acme", "SELECT [170141183460469231731687303715884105727::HUGEINT, 1] AS l, "
                             "[TIMETZ '10:00:00+01'] AS t, MAP([1.5::DECIMAL(2,1)], [1]) AS m", {}, 10)
    assert rows(result) == [{"l": ["170141183460469231731687303715884105727", 1], "t": ["10:00:00+01:00"],
                             "m": {"1.5": 1}}]


def test_empty_result_and_repeated_column_names(dbs):
    result = dbs.run("acme", "SELECT 1 AS a, 2 AS a, 3 AS a_1 WHERE false", {}, 10)
    assert [c["name"] for c in result.columns] == ["a", "a_1", "a_1_1"]
    assert (result.rows_json, result.row_count, result.truncated) == (b"[]", 0, False)
    names = [c["name"] for c in dbs.run("acme", "SELECT 1 AS a, 2 AS a", {}, 10).columns]
    assert names == ["a", "a_1"]


@pytest.mark.parametrize(("total", "max_rows", "count", "truncated"), [
    (25, 10, 10, True), (25, 25, 25, False), (25, 26, 25, False), (0, 1, 0, False), (1, 1, 1, False),
])
def test_truncation_at_max_rows(dbs, total, max_rows, count, truncated):
    result = dbs.run("acme", f"SELECT range AS n FROM range({total}) ORDER BY n", {}, max_rows)
    assert (result.row_count, result.truncated) == (count, truncated)
    assert [r["n"] for r in rows(result)] == list(range(count))


@pytest.mark.parametrize("total", [0, 1, 2, 3, 4, 6, 7, 9, 10, 11])
@pytest.mark.parametrize("max_rows", [0, 1, 3, 6, 10])
def test_results_are_serialised_in_chunks_without_losing_or_doubling_a_row(dbs, monkeypatch, total, max_rows):
    monkeypatch.setattr(serialise, "FETCH_CHUNK", 3)
    result = dbs.run("acme", f"SELECT range AS n, range::VARCHAR AS s FROM range({total}) ORDER BY n", {}, max_rows)
    count = min(total, max_rows)
    assert (result.row_count, result.truncated) == (count, total > max_rows)
    assert rows(result) == [{"n": i, "s": str(i)} for i in range(count)]


def test_truncation_does_not_materialise_the_whole_result(dbs):
    started = time.perf_counter()
    result = dbs.run("acme", "SELECT range FROM range(10_000_000_000)", {}, 5)
    assert (result.row_count, result.truncated) == (5, True)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("sql", ["SELECT 1.5::DECIMAL(3,1) AS d; -- done; really", "SELECT 1.5 AS d;;",
                                 "-- lead\nSELECT 1.5 AS d -- trail", "SELECT 1.5 AS d /* ; */ ;"])
def test_trailing_semicolons_and_comments(dbs, sql):
    assert rows(dbs.run("acme", sql, {}, 10)) == [{"d": 1.5}]


def test_decimal_results_keep_the_query_order(dbs):
    sql = "SELECT range AS n, (range / 7)::DECIMAL(18,2) AS d, 1 AS d FROM range(20000) ORDER BY hash(range)"
    got = rows(dbs.run("acme", sql, {}, 20000))
    expected = duckdb.sql(sql).fetchall()
    assert [(r["n"], r["d"], r["d_1"]) for r in got] == [(n, float(d), one) for n, d, one in expected]


# --- parameters ---------------------------------------------------------------------------------------

def test_parameters_are_bound_never_spliced(vendas):
    sql = "SELECT regiao, total FROM vendas WHERE regiao = $regiao ORDER BY regiao"
    assert rows(vendas.run("acme", sql, {"regiao": "Sul"}, 10)) == [{"regiao": "Sul", "total": 150000.0}]
    injection = "Sul' OR 1=1 --"
    assert rows(vendas.run("acme", sql, {"regiao": injection}, 10)) == []
    echoed = vendas.run("acme", "SELECT $regiao AS v", {"regiao": injection}, 10)
    assert rows(echoed) == [{"v": injection}]


def test_only_referenced_parameters_are_passed_and_python_values_bind(vendas):
    result = vendas.run("acme", "SELECT $d AS d, $n + 1 AS n, $x AS x, $when AS w",
                        {"d": date(2026, 1, 2), "n": 41, "x": Decimal("1.50"), "when": None, "unused": "z"}, 10)
    assert rows(result) == [{"d": "2026-01-02", "n": 42, "x": 1.5, "w": None}]


def test_a_missing_parameter_is_a_query_failure(vendas):
    with pytest.raises(QueryFailed, match="regiao"):
        vendas.run("acme", "SELECT * FROM vendas WHERE regiao = $regiao", {}, 10)


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT * FROM nope", "SELECT 1/'x'", "SELECT error('boom')"])
def test_sql_errors_are_query_failures(dbs, sql):
    with pytest.raises(QueryFailed) as e:
        dbs.run("acme", sql, {}, 10)
    assert e.value.message


# --- hardening ----------------------------------------------------------------------------------------

@pytest.fixture
def two_companies(dbs, tmp_path):
    load_csv(dbs, "acme", "t", "v\nacme\n", tmp_path)
    load_csv(dbs, "beta", "t", "v\nbeta\n", tmp_path)
    (dbs.files_dir("acme") / "mine.csv").write_text("v\nacme-file\n")
    (dbs.files_dir("beta") / "secret.csv").write_text("v\nbeta-secret\n")
    return dbs


def test_companies_see_only_their_own_data(two_companies):
    dbs = two_companies
    assert rows(dbs.run("acme", "SELECT v FROM t", {}, 10)) == [{"v": "acme"}]
    assert rows(dbs.run("beta", "SELECT v FROM t", {}, 10)) == [{"v": "beta"}]
    mine = dbs.files_dir("acme") / "mine.csv"
    assert rows(dbs.run("acme", f"SELECT v FROM read_csv('{mine}')", {}, 10)) == [{"v": "acme-file"}]
    with pytest.raises(QueryFailed, match="function glob is not allowed"):  # it would tell absolute paths
        dbs.run("acme", f"SELECT count(*) AS n FROM glob('{mine.parent}/*')", {}, 10)


def escapes(dbs) -> list[str]:
    data, acme, beta = dbs.data_dir, dbs.files_dir("acme"), dbs.files_dir("beta")
    beta_db = next((data / "beta").glob("db-*.duckdb"))
    return [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_csv('file:///etc/passwd')",
        f"SELECT * FROM read_csv('{beta}/secret.csv')",
        f"SELECT * FROM read_csv('{acme}/../../beta/files/secret.csv')",
        f"SELECT * FROM read_blob('{beta_db}')",
        f"SELECT * FROM read_csv('{acme}-evil/x.csv')",
        "SELECT * FROM read_csv('mine.csv')",  # relative paths are refused, not resolved inside files/
        "SELECT * FROM read_csv('../../beta/files/secret.csv')",
        "SELECT * FROM read_csv('~/x.csv')",
        "SELECT * FROM glob('/*')",
        f"SELECT * FROM glob('{data}/*')",
        f"SELECT * FROM glob('{acme}/../*')",
        "SELECT * FROM glob('*')",
        "SELECT * FROM read_csv('https://example.com/x.csv')",
        "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
        "SELECT * FROM (SELECT * FROM read_text('/etc/passwd'))",
    ]


def test_endpoint_sql_cannot_leave_its_files_folder(two_companies):
    dbs = two_companies
    for sql in escapes(dbs):
        with pytest.raises(QueryFailed) as e:
            dbs.run("acme", sql, {}, 10)
        assert str(dbs.data_dir) not in e.value.message, sql  # our disk layout is not the caller's business


@pytest.mark.parametrize("sql", [
    "SELECT 1; SELECT 2",
    "COPY (SELECT 1) TO '{files}/out.csv'",
    "EXPORT DATABASE '{files}/export'",
    "ATTACH '{beta_db}' AS b",
    "ATTACH ':memory:' AS m",
    "DETACH acme",
    "INSTALL httpfs",
    "LOAD httpfs",
    "FORCE INSTALL spatial FROM community",
    "SET threads = 8",
    "SET memory_limit = '100GB'",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA database_list",
    "CREATE TEMP TABLE x AS SELECT 1",
    "CHECKPOINT",
    "CALL pragma_version()",
    "EXPLAIN SELECT 1",
    "PIVOT (SELECT 1 AS a) ON a",
    "USE memory",
    "",
])
def test_only_a_single_select_is_accepted(two_companies, sql):
    dbs = two_companies
    beta_db = next((dbs.data_dir / "beta").glob("db-*.duckdb"))
    with pytest.raises(QueryFailed, match="single SELECT"):
        dbs.run("acme", sql.format(files=dbs.files_dir("acme"), beta_db=beta_db), {}, 10)
    assert not (dbs.files_dir("acme") / "out.csv").exists()


def test_cursors_inherit_the_locked_configuration(two_companies):
    """Below the SELECT-only check: the DuckDB configuration itself refuses what matters."""
    dbs = two_companies
    files = dbs.files_dir("acme")
    beta_db = next((dbs.data_dir / "beta").glob("db-*.duckdb"))
    cursor, _ = dbs._cursor("acme")
    try:
        settings = dict(cursor.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration',"
            " 'threads', 'memory_limit', 'autoload_known_extensions', 'autoinstall_known_extensions',"
            " 'allow_community_extensions', 'python_enable_replacements', 'allowed_directories', 'TimeZone')"
        ).fetchall())
        assert settings["enable_external_access"] == "false"
        assert settings["lock_configuration"] == "true"
        assert settings["threads"] == "2"
        assert settings["memory_limit"] in ("256.0 MiB", "244.1 MiB")
        assert settings["autoload_known_extensions"] == settings["autoinstall_known_extensions"] == "false"
        assert settings["allow_community_extensions"] == settings["python_enable_replacements"] == "false"
        assert f"{files}/" in settings["allowed_directories"]
        for sql in ["SET threads = 8", "SET GLOBAL memory_limit = '100GB'", "SET enable_external_access = true",
                    "SET allowed_directories = ['/']", "RESET lock_configuration", "SET lock_configuration = false",
                    "SET TimeZone = 'America/Sao_Paulo'", "SET autoinstall_known_extensions = true",
                    "INSTALL httpfs", "LOAD httpfs", f"ATTACH '{beta_db}' AS b", "CREATE TABLE x (a INT)",
                    "COPY (SELECT 1) TO '/tmp/escape.csv'", "SELECT * FROM read_text('/etc/passwd')"]:
            with pytest.raises(duckdb.Error):
                cursor.execute(sql)
        relation = cursor.sql("SELECT 42 AS x")  # noqa: F841 - what a replacement scan would find
        with pytest.raises(duckdb.CatalogException):
            cursor.execute("SELECT * FROM relation")
        # DuckDB does let SQL write inside its one allowed folder; only the SELECT-only check prevents it.
        cursor.execute(f"COPY (SELECT 1 AS a) TO '{files}/written.csv'")
        assert (files / "written.csv").exists()
    finally:
        cursor.close()


def test_a_company_without_a_database_can_query_its_files(dbs):
    path = dbs.files_dir("fresh") / "x.csv"
    path.write_text("a,b\n1,2\n")
    assert rows(dbs.run("fresh", f"SELECT * FROM read_csv('{path}')", {}, 10)) == [{"a": 1, "b": 2}]
    assert dbs.tables("fresh") == []
    with pytest.raises(QueryFailed):
        dbs.run("fresh", "SELECT * FROM read_text('/etc/passwd')", {}, 10)


@pytest.mark.parametrize("slug", ["../acme", "acme/x", "", "Acme", "a" * 64])
def test_slugs_cannot_become_paths(dbs, slug):
    with pytest.raises(ValueError):
        dbs.run(slug, "SELECT 1", {}, 10)


# --- loading and versions -----------------------------------------------------------------------------

def test_reload_switches_versions_under_a_cached_connection(vendas, tmp_path):
    dbs = vendas
    company = dbs.data_dir / "acme"
    assert rows(dbs.run("acme", "SELECT count(*) AS n FROM vendas", {}, 10)) == [{"n": 3}]
    old_cursor, _ = dbs._cursor("acme")  # a query still running on the old version
    old_version = (company / "CURRENT").read_text().strip()
    load_csv(dbs, "acme", "vendas", "regiao,total\nOeste,1\n", tmp_path)
    new_version = (company / "CURRENT").read_text().strip()
    assert new_version > old_version
    assert rows(dbs.run("acme", "SELECT regiao FROM vendas", {}, 10)) == [{"regiao": "Oeste"}]
    assert sorted(p.name for p in company.glob("db-*")) == [new_version]  # the old file is gone...
    assert old_cursor.execute("SELECT count(*) FROM vendas").fetchone() == (3,)  # ...but still readable
    old_cursor.close()


def test_a_loader_in_another_process_does_not_fight_the_reader(vendas, tmp_path):
    """The point of versioned files: `dataapi data load` writes while the worker holds the database open."""
    dbs = vendas
    assert rows(dbs.run("acme", "SELECT count(*) AS n FROM vendas", {}, 10)) == [{"n": 3}]
    csv = tmp_path / "other.csv"
    csv.write_text("regiao,total\nOeste,1\n")
    script = ("import sys; from pathlib import Path; from activities.duck.versions import load_file; "
              "print(load_file(Path(sys.argv[1]), 'acme', 'vendas', Path(sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", script, str(dbs.data_dir), str(csv)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[3])
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
    assert rows(dbs.run("acme", "SELECT regiao FROM vendas", {}, 10)) == [{"regiao": "Oeste"}]


def test_two_instances_in_one_process_share_the_hardened_database(vendas):
    other = CompanyDatabases(vendas.data_dir)
    assert rows(other.run("acme", "SELECT count(*) AS n FROM vendas", {}, 10)) == [{"n": 3}]
    with pytest.raises(QueryFailed):
        other.run("acme", "SELECT * FROM read_text('/etc/passwd')", {}, 10)


def test_load_appends_when_not_replacing_and_keeps_other_tables(vendas, tmp_path):
    dbs = vendas
    assert load_csv(dbs, "acme", "vendas", "regiao,total\nOeste,1\n", tmp_path, replace=False) == 1
    assert load_csv(dbs, "acme", "metas", "ano\n2026\n", tmp_path) == 1
    assert rows(dbs.run("acme", "SELECT count(*) AS n FROM vendas", {}, 10)) == [{"n": 4}]
    assert dbs.tables("acme") == ["metas", "vendas"]


def test_load_formats_are_detected_by_content(dbs, tmp_path):
    parquet = tmp_path / "data.bin"
    duckdb.execute(f"COPY (SELECT range AS n, 'x' || range AS s FROM range(5)) TO '{parquet}' (FORMAT parquet)")
    assert parquet.read_bytes()[:4] == b"PAR1"
    assert load_file(dbs.data_dir, "acme", "p", parquet) == 5
    array = tmp_path / "array.json"
    array.write_text('  [{"n": 1, "s": "a"}, {"n": 2, "s": "b"}]')
    assert load_file(dbs.data_dir, "acme", "ja", array) == 2
    ndjson = tmp_path / "lines.json"
    ndjson.write_bytes(b'\xef\xbb\xbf{"n": 1, "s": "a"}\n{"n": 2, "s": "b"}\n{"n": 3, "s": "c"}\n')
    assert load_file(dbs.data_dir, "acme", "jl", ndjson) == 3
    csv = tmp_path / "data.txt"
    csv.write_text("n;s\n1;a\n")
    assert load_file(dbs.data_dir, "acme", "c", csv) == 1
    assert rows(dbs.run("acme", "SELECT * FROM p ORDER BY n LIMIT 1", {}, 10)) == [{"n": 0, "s": "x0"}]
    assert rows(dbs.run("acme", "SELECT * FROM jl ORDER BY n DESC LIMIT 1", {}, 10)) == [{"n": 3, "s": "c"}]
    assert rows(dbs.run("acme", "SELECT * FROM c", {}, 10)) == [{"n": 1, "s": "a"}]
    assert dbs.tables("acme") == ["c", "ja", "jl", "p"]
    assert len(list((dbs.data_dir / "acme").glob("db-*"))) == 1


@pytest.mark.parametrize("table", ['t"; DROP TABLE x; --', "T", "1t", "a-b", "", "t\n", "a" * 64])
def test_table_names_are_validated(dbs, tmp_path, table):
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    with pytest.raises(LoadFailed, match="table name"):
        load_file(dbs.data_dir, "acme", table, path)


def test_a_failed_load_leaves_the_current_version_alone(vendas, tmp_path):
    dbs = vendas
    company = dbs.data_dir / "acme"
    before = sorted(p.name for p in company.iterdir())
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1}, {"a": ')
    with pytest.raises(LoadFailed):
        load_file(dbs.data_dir, "acme", "vendas", broken)
    with pytest.raises(LoadFailed, match="not a file"):
        load_file(dbs.data_dir, "acme", "vendas", tmp_path / "missing.csv")
    assert sorted(p.name for p in company.iterdir()) == before
    assert rows(dbs.run("acme", "SELECT count(*) AS n FROM vendas", {}, 10)) == [{"n": 3}]


def test_a_reserved_word_is_a_fine_table_name(dbs, tmp_path):
    assert load_csv(dbs, "acme", "select", "a\n1\n", tmp_path) == 1
    assert rows(dbs.run("acme", 'SELECT a FROM "select"', {}, 10)) == [{"a": 1}]


# --- interrupts and concurrency -----------------------------------------------------------------------

def test_interrupt_stops_a_running_query(dbs):
    handed: list = []
    started = threading.Event()

    def on_start(interrupt):
        handed.append(interrupt)
        started.set()

    pool = ThreadPoolExecutor(1)
    future = pool.submit(dbs.run, "acme", "SELECT count(*) FROM range(10_000_000_000)", {}, 10, on_start)
    assert started.wait(5)
    time.sleep(0.2)
    t0 = time.perf_counter()
    handed[0]()
    with pytest.raises(QueryInterrupted):
        future.result(timeout=5)
    assert time.perf_counter() - t0 < 1
    handed[0]()  # after the query: harmless
    pool.shutdown()
    assert rows(dbs.run("acme", "SELECT 1 AS one", {}, 10)) == [{"one": 1}]  # the database is fine


def test_interrupt_before_the_query_starts_is_not_lost(dbs):
    t0 = time.perf_counter()
    with pytest.raises(QueryInterrupted):
        dbs.run("acme", "SELECT count(*) FROM range(10_000_000_000)", {}, 10, on_start=lambda interrupt: interrupt())
    assert time.perf_counter() - t0 < 1


def test_interrupt_during_a_streaming_fetch(dbs):
    handed: list = []
    pool = ThreadPoolExecutor(1)
    sql = "SELECT a.range FROM range(200000) a, range(200000) b WHERE a.range + b.range < 0"
    future = pool.submit(dbs.run, "acme", sql, {}, 10, handed.append)
    time.sleep(0.3)
    handed[0]()
    with pytest.raises(QueryInterrupted):
        future.result(timeout=2)
    pool.shutdown()


def test_concurrent_queries_over_several_companies(dbs, tmp_path):
    for slug in ("acme", "beta", "gama"):
        load_csv(dbs, slug, "t", "v,n\n" + "".join(f"{slug},{i}\n" for i in range(100)), tmp_path)

    def query(i: int):
        slug = ("acme", "beta", "gama")[i % 3]
        result = dbs.run(slug, "SELECT v, sum(n) AS s FROM t WHERE n >= $min GROUP BY v", {"min": i % 10}, 10)
        return slug, i % 10, rows(result)

    with ThreadPoolExecutor(8) as pool:
        for slug, low, got in pool.map(query, range(300)):
            assert got == [{"v": slug, "s": sum(range(low, 100))}]


def test_queries_keep_running_while_data_is_reloaded(vendas, tmp_path):
    dbs = vendas
    errors: list = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                n = rows(dbs.run("acme", "SELECT count(*) AS n FROM vendas", {}, 10))[0]["n"]
                assert n in (3, 1, 2)
            except Exception as e:  # collected and asserted below: a thread cannot fail the test itself
                errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(5):
        load_csv(dbs, "acme", "vendas", "regiao,total\n" + "x,1\n" * (1 + i % 2), tmp_path)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list((dbs.data_dir / "acme").glob("db-*"))) == 1


# --- rows written by DuckDB (the JSON path) and by Python (orjson) give the same JSON ------------------------

NATIVE_SQL = """
SELECT * FROM (VALUES
    (true, (-128)::TINYINT, (-32768)::SMALLINT, -2147483648, (-9223372036854775808)::BIGINT, 255::UTINYINT,
     65535::USMALLINT, 4294967295::UINTEGER, 'a"b\\c é 日本 </script>' || chr(1) || chr(10) || chr(8232),
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID, 0.1::DOUBLE, 123456789.125::DECIMAL(18,3), DATE '2026-01-31'),
    (false, 127::TINYINT, 32767::SMALLINT, 2147483647, 9223372036854775807::BIGINT, 0::UTINYINT, 0::USMALLINT,
     0::UINTEGER, '', NULL, 'nan'::DOUBLE, (-0.5)::DECIMAL(18,3), 'infinity'::DATE),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'inf'::DOUBLE, NULL, '-infinity'::DATE),
    (NULL, NULL, NULL, NULL, 9007199254740993::BIGINT, NULL, NULL, NULL, 'x', NULL, '-inf'::DOUBLE, NULL, NULL),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1e300, NULL, DATE '0001-01-01'),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 5e-324, NULL, NULL),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1e16, NULL, NULL),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, -0.0, NULL, NULL)
) AS t("b", "ti", "si", "i", "bi", "ut", "us", "ui", "we""ird name", "u", "dbl", "dec", "dt")
"""


json_rows = serialise.serialise_json_rows


def _python_path(monkeypatch, dbs):
    """From here on queries take the Python path (the shapes worked out so far are forgotten)."""
    monkeypatch.setattr(shapes, "json_rows_sql", lambda *_: None)
    for entry in dbs._open.values():
        entry.shapes.clear()


@pytest.mark.parametrize("sql", [
    NATIVE_SQL,
    "SELECT range AS n, range::VARCHAR AS s, 1 AS s FROM range(5000) ORDER BY hash(range)",  # order, s and s_1
    "SELECT 1 AS x WHERE false",  # no rows
    "SELECT 1 AS \"__DataApi_Row\", 2 AS y",  # our row alias as a column name: the Python path, same answer
    "SELECT 1 AS a, 2 AS \"A\"",  # names only case differs: renamed (a, A_1), as DuckDB's are case-insensitive
])
@pytest.mark.parametrize("max_rows", [0, 2, 10_000])
def test_duckdb_writes_the_rows_python_would(dbs, monkeypatch, sql, max_rows):
    monkeypatch.setattr(serialise, "FETCH_CHUNK", 3)
    taken = []
    monkeypatch.setattr(databases, "serialise_json_rows", lambda *a: taken.append(1) or json_rows(*a))
    fast = dbs.run("acme", sql, {}, max_rows)
    assert taken == ([] if "__DataApi_Row" in sql else [1])
    _python_path(monkeypatch, dbs)
    slow = dbs.run("acme", sql, {}, max_rows)
    assert (fast.columns, fast.row_count, fast.truncated) == (slow.columns, slow.row_count, slow.truncated)
    assert orjson.loads(fast.rows_json) == orjson.loads(slow.rows_json)
    assert list(orjson.loads(fast.rows_json)[0]) == [c["name"] for c in fast.columns] if fast.row_count else True


def test_the_json_path_is_taken_for_native_types_only():
    native = shapes.json_rows_sql("SELECT 1", ["a", "b", "c"], ["INTEGER", "DECIMAL(18,2)", "DATE"])
    assert native is not None and native.startswith("SELECT to_json(__dataapi_row)::VARCHAR FROM (SELECT #1 AS \"a\"")
    for other in ("TIMESTAMP", "HUGEINT", "UBIGINT", "FLOAT", "BLOB", "INTERVAL", "JSON", "INTEGER[]", "TIME",
                  "STRUCT(a INTEGER)", "MAP(VARCHAR, INTEGER)", "ENUM('a', 'b')"):
        assert shapes.json_rows_sql("SELECT 1", ["a", "b"], ["INTEGER", other]) is None, other
    renamed = shapes.json_rows_sql("SELECT 1", unique_names(["a", "A"]), ["INTEGER", "INTEGER"])  # as shape_of names
    assert renamed is not None and '#2 AS "A_1"' in renamed
    assert shapes.json_rows_sql("SELECT 1", ["__DATAAPI_ROW"], ["INTEGER"]) is None


def test_the_json_path_keeps_parameters_and_interrupts(dbs):
    result = dbs.run("acme", "SELECT range AS n FROM range(10) WHERE range >= $low ORDER BY n", {"low": 7}, 10)
    assert rows(result) == [{"n": 7}, {"n": 8}, {"n": 9}]


@pytest.mark.parametrize("sql", ["SELECT 'São Paulo é' AS r, 1.5::DECIMAL(3,1) AS d; -- fim ção",
                                 "SELECT '日本' AS r, 1.5::DECIMAL(3,1) AS d /* é */ ;"])
def test_non_ascii_sql_is_wrapped_correctly(dbs, monkeypatch, sql):
    """DuckDB's token positions are byte offsets: cutting the tail by them must not split or drop characters."""
    assert shapes.strip_tail(sql).rstrip().endswith("AS d")
    fast = rows(dbs.run("acme", sql, {}, 10))
    _python_path(monkeypatch, dbs)  # the decimal-cast wrapper
    assert rows(dbs.run("acme", sql, {}, 10)) == fast == [{"r": sql.split("'")[1], "d": 1.5}]


@pytest.mark.parametrize("sql", [
    "WITH x AS (SELECT regiao FROM vendas) SELECT * FROM x ORDER BY regiao", "FROM vendas SELECT regiao ORDER BY 1",
    "SELECT regiao, total FROM vendas ORDER BY #2 DESC", "SELECT DISTINCT regiao FROM vendas ORDER BY 1",
    "SELECT * FROM vendas QUALIFY row_number() OVER (ORDER BY total) = 1", "SELECT regiao, regiao FROM vendas",
    'SELECT regiao AS "a""b" FROM vendas ORDER BY ALL', "SELECT $x::INTEGER AS v; -- fim",
])
def test_query_shapes_the_json_path_wraps(vendas, monkeypatch, sql):
    fast = rows(vendas.run("acme", sql, {"x": 5}, 10))
    _python_path(monkeypatch, vendas)
    assert fast == rows(vendas.run("acme", sql, {"x": 5}, 10)) and fast


# --- shapes: worked out once per SQL, parameter types and database version ---------------------------------

def test_a_query_is_analysed_once_and_small_results_take_the_python_path(vendas, monkeypatch):
    analysed, by_json = [], []
    shape, json_rows_ = shapes.shape_of, serialise.serialise_json_rows
    monkeypatch.setattr(databases, "shape_of", lambda *a: analysed.append(a[1]) or shape(*a))
    monkeypatch.setattr(databases, "serialise_json_rows", lambda *a: by_json.append(a[3]) or json_rows_(*a))
    small = "SELECT regiao, total FROM vendas WHERE total >= $min ORDER BY regiao"
    big = "SELECT range AS n FROM range(100) WHERE range >= $min ORDER BY n"
    answers = [rows(vendas.run("acme", small, {"min": 0}, 10)) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 3
    assert analysed == [small] and len(by_json) == 1  # then the Python path: the result was small
    assert rows(vendas.run("acme", small, {"min": "0"}, 10)) == answers[0]  # a string: another shape, JSON
    assert analysed == [small, small] and len(by_json) == 2
    for low in (0, 99, 0, 0):  # 100 rows (JSON), 1 (JSON; the last was big), 100 (Python), 100 (JSON)
        got = rows(vendas.run("acme", big, {"min": low}, 1000))
        assert got == [{"n": n} for n in range(low, 100)]
    assert analysed == [small, small, big] and len(by_json) == 2 + 3


def test_a_new_database_version_gets_new_shapes(vendas, tmp_path):
    sql = "SELECT * FROM vendas ORDER BY 1"
    assert [c["name"] for c in vendas.run("acme", sql, {}, 10).columns] == ["regiao", "total"]
    load_csv(vendas, "acme", "vendas", "cidade,regiao,valor\nRecife,Nordeste,1.5\n", tmp_path)
    result = vendas.run("acme", sql, {}, 10)
    assert [c["name"] for c in result.columns] == ["cidade", "regiao", "valor"]
    assert rows(result) == [{"cidade": "Recife", "regiao": "Nordeste", "valor": 1.5}]


def test_shapes_are_bounded(dbs, monkeypatch):
    monkeypatch.setattr(databases, "_SHAPES_PER_DATABASE", 5)
    for i in range(20):
        assert rows(dbs.run("acme", f"SELECT {i} AS v", {}, 10)) == [{"v": i}]
    assert len(dbs._open["acme"].shapes) == 5
