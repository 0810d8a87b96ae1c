"""One spelling of result values in both APIs: intervals as ISO 8601 durations, repeated column names renamed
case-insensitively (DuckDB's identifiers are), in the Data API's serialiser and in the Jobs API's SQL runner."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

from activities.duck.databases import CompanyDatabases
from activities.launchers import SQL_RUNNER
from dataapi.json_values import iso_duration, unique_names


def test_iso_duration():
    assert iso_duration(timedelta(days=1, hours=1)) == "P1DT3600S"
    assert iso_duration(timedelta(seconds=1.5)) == "P0DT1.5S"
    assert iso_duration(timedelta(microseconds=-500_000)) == "-P0DT0.5S"
    assert iso_duration(timedelta(0)) == "P0DT0S"


def test_unique_names_ignore_case():
    assert unique_names(["a", "a", "A", "b"]) == ["a", "a_1", "A_2", "b"]
    assert unique_names(["x", "x_1", "x"]) == ["x", "x_1", "x_2"]


SQL = "SELECT INTERVAL 90 MINUTE AS d, 1 AS n, 2 AS N"


def test_the_data_api_writes_intervals_and_repeated_names_alike(tmp_path):
    result = CompanyDatabases(tmp_path).run("acme", SQL, {}, 10)
    [row] = json.loads(result.rows_json)
    assert [c["name"] for c in result.columns] == ["d", "n", "N_1"]
    assert row == {"d": "P0DT5400S", "n": 1, "N_1": 2}


def test_the_sql_runner_writes_intervals_and_repeated_names_alike(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "inputs").mkdir()
    (tmp_path / "output").mkdir()
    (tmp_path / "repo" / "sql.json").write_text(json.dumps({"script": "", "outputs": [], "result": SQL}))
    done = subprocess.run([sys.executable, "-I", "-B", str(SQL_RUNNER), str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "result.json").read_text()) == {"d": "P0DT5400S", "n": 1, "N_1": 2}
