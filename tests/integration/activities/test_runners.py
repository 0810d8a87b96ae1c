"""The job runners against real processes, in job folders built here."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from datetime import datetime

import duckdb
import openpyxl
import pytest

from activities.runners import RunLimits, run_job
from activities.sql_runner import input_tables
from dataapi.jobs_api.code import RepositoryCodeError, validate_code
from tests.support.job_runs import host_processes, job_folder, log, python, wait_gone

LIMITS = RunLimits(time_limit_seconds=30)
SEED_RESULT = {"output": {"value": 600, "more_results": "So long, and thanks for all the fish"}}


# --- python jobs ------------------------------------------------------------------------------------------

def test_python_job_reads_inputs_and_params_writes_output_result_and_logs(tmp_path):
    job = job_folder(tmp_path, {"a": 10, "b": 20, "hyperparam": "Hyperparam_Example"},
                     {"sales.csv": "region,amount\nnorth,5\nsouth,15\n"})
    code = python("""
        import csv, json, sys
        from helpers import total  # a sibling module of the entry point

        params = json.load(open("params.json"))
        with open("inputs/sales.csv") as f:
            amounts = [int(row["amount"]) for row in csv.DictReader(f)]
        value = (params["a"] + params["b"]) * total(amounts)
        with open("output/a.csv", "w") as f:
            f.write(f"value\\n{value}\\n")
        print("computed", value)
        print("a warning", file=sys.stderr)
        json.dump({"output": {"value": value, "more_results": "So long, and thanks for all the fish"}},
                  open("result.json", "w"))
        """, **{"helpers.py": "def total(xs):\n    return sum(xs)\n"})

    result = run_job("python", code, job, LIMITS)

    assert (result.ok, result.exit_code, result.error) == (True, 0, None)
    assert 0 < result.duration_ms < 10_000
    assert json.loads((job / "result.json").read_text()) == SEED_RESULT
    assert (job / "output" / "a.csv").read_text() == "value\n600\n"
    assert log(job, "stdout") == "computed 600\n"
    assert log(job, "stderr") == "a warning\n"
    assert (job / "repo" / "helpers.py").exists()
    assert not list(job.rglob("__pycache__"))  # PYTHONDONTWRITEBYTECODE


def test_non_zero_exit_fails_with_its_status(tmp_path):
    job = job_folder(tmp_path)
    code = python("""
        import json, sys
        json.dump({}, open("result.json", "w"))
        print("boom", file=sys.stderr)
        sys.exit(3)
        """)
    result = run_job("python", code, job, LIMITS)
    assert (result.ok, result.exit_code, result.error) == (False, 3, "exited with status 3")
    assert log(job, "stderr") == "boom\n"


@pytest.mark.parametrize(("source", "error"), [
    ("print('done')", "result.json missing"),
    ("open('result.json', 'w').write('{\"a\": NaN}')", "result.json is not valid JSON"),
    ("import os; os.symlink('/etc/passwd', 'result.json')", "result.json is not a regular file"),
])
def test_result_json_must_be_there_and_json(tmp_path, source, error):
    result = run_job("python", python(source), job_folder(tmp_path), LIMITS)
    assert (result.ok, result.exit_code, result.error) == (False, 0, error)


GRANDCHILD = """
    import subprocess, time
    child = subprocess.Popen(["sleep", "{seconds}"])
    open("child.pid", "w").write(str(child.pid))
    print("waiting", flush=True)
    time.sleep(100)
    """


def unique_sleep() -> str:
    """A sleep duration no other process on the host has on its command line."""
    return f"100.{time.time_ns() % 10**9}"


def test_time_limit_kills_the_whole_process_group(tmp_path):
    job = job_folder(tmp_path)
    seconds = unique_sleep()
    result = run_job("python", python(GRANDCHILD.format(seconds=seconds)), job, RunLimits(time_limit_seconds=1))
    assert (result.ok, result.exit_code, result.error) == (False, None, "time limit exceeded")
    assert 1000 <= result.duration_ms < 2000
    assert (job / "child.pid").exists()
    assert wait_gone(seconds)
    assert log(job, "stdout") == "waiting\n"


def test_kill_from_another_thread_takes_the_group_down(tmp_path):
    job = job_folder(tmp_path)
    kills = []

    def kill_when_started():
        while not (job / "child.pid").exists():
            time.sleep(0.02)
        kills[0]()

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    seconds = unique_sleep()
    result = run_job("python", python(GRANDCHILD.format(seconds=seconds)), job, LIMITS, on_start=kills.append)
    killer.join()
    assert (result.ok, result.exit_code, result.error) == (False, None, "killed")
    assert result.duration_ms < 5000
    assert wait_gone(seconds)
    kills[0]()  # after the end: harmless


def test_an_escaped_process_does_not_hold_the_run_nor_outlive_it(tmp_path):
    job = job_folder(tmp_path)
    seconds = unique_sleep()
    code = python(f"""
        import subprocess
        child = subprocess.Popen(["sleep", "{seconds}"], start_new_session=True)  # leaves the group, keeps the pipes
        open("child.pid", "w").write(str(child.pid))
        open("result.json", "w").write("{{}}")
        """)
    try:
        result = run_job("python", code, job, LIMITS)
        assert result.ok
        assert result.duration_ms < 3000
        assert wait_gone(seconds)  # the sandbox's pid namespace ended with the job's main process
    finally:
        for pid in host_processes(seconds):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("runner", "code"), [
    ("python", {"files": {"main.py": "block = bytearray(1 << 30)\nopen('result.json', 'w').write('{}')\n"}}),
    ("sql", {"script": "CREATE TABLE t AS SELECT list(i) FROM range(100000000) t(i)", "result": "SELECT 1"}),
])
def test_memory_limit(tmp_path, runner, code):
    job = job_folder(tmp_path)
    result = run_job(runner, code, job, RunLimits(time_limit_seconds=30, memory_bytes=512 << 20))
    assert (result.ok, result.exit_code, result.error) == (False, 1, "memory limit exceeded")
    assert "MemoryError" in log(job, "stderr")


def test_file_size_limit(tmp_path):
    job = job_folder(tmp_path)
    code = python("open('output/big.bin', 'wb').write(bytes(2 << 20))")
    result = run_job("python", code, job, RunLimits(time_limit_seconds=30, max_output_bytes=1 << 20))
    assert (result.ok, result.error) == (False, "exited with status 1")
    assert "File too large" in log(job, "stderr")
    assert (job / "output" / "big.bin").stat().st_size == 1 << 20


def test_logs_are_capped_without_failing_the_job(tmp_path):
    job = job_folder(tmp_path)
    code = python("""
        import json, sys
        for _ in range(300):
            sys.stdout.write("x" * 9999 + "\\n")
        json.dump({}, open("result.json", "w"))
        """)
    result = run_job("python", code, job, RunLimits(time_limit_seconds=30, max_log_bytes=95_000))
    assert result.ok
    stdout = log(job, "stdout")
    assert stdout.startswith("x" * 9999 + "\n")
    assert stdout.endswith("x\n[log truncated: it reached 95000 bytes]\n")
    assert len(stdout) == 95_000 + len("\n[log truncated: it reached 95000 bytes]\n")


def test_environment_is_scrubbed_and_no_descriptor_leaks(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAAPI_SECRET_KEY", "leak")
    job = job_folder(tmp_path)
    leaked = open(tmp_path / "worker-file", "w")  # noqa: SIM115 - an open descriptor the job must not inherit
    try:
        code = python("""
            import json, os, sys
            json.dump({"env": dict(os.environ), "cwd": os.getcwd(), "fds": sorted(os.listdir("/proc/self/fd")),
                       "path": sys.path}, open("result.json", "w"))
            """)
        result = run_job("python", code, job, LIMITS)
    finally:
        leaked.close()
    assert result.ok, log(job, "stderr")
    seen = json.loads((job / "result.json").read_text())
    assert seen["env"] == {  # PWD: set by bwrap as it enters the job folder
        "PATH": "/usr/bin:/bin", "HOME": "/job", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1", "MALLOC_ARENA_MAX": "2", "PWD": "/job"}
    assert seen["cwd"] == "/job"  # the job folder, as the sandbox shows it
    assert seen["fds"] == ["0", "1", "2", "3"]  # 3: the listing itself
    assert seen["path"][0] == "/job/repo"
    assert any(p.startswith(sys.prefix) and p.endswith("site-packages") for p in seen["path"])


def test_invalid_code_is_refused_without_running(tmp_path):
    job = job_folder(tmp_path)
    result = run_job("python", {"files": {"../evil.py": "x"}}, job, LIMITS)
    assert (result.ok, result.exit_code) == (False, None)
    assert result.error.startswith("invalid repository code: file path '../evil.py'")
    assert not (job / "repo").exists()


# --- sql jobs ---------------------------------------------------------------------------------------------

def sql(script: str, result: str, outputs: list[str] | None = None) -> dict:
    return {"script": textwrap.dedent(script), "outputs": outputs or [], "result": result}


def test_sql_job_end_to_end(tmp_path):
    job = job_folder(
        tmp_path,
        {"min_total": 10, "region": "north", "options": {"factor": 2}},
        {"orders.csv": "customer_id,total,day\n1,5.5,2024-01-02\n1,20,2024-01-03\n2,30,2024-01-04\n3,1,2024-01-05\n",
         "Customers.csv": "id,name,region\n1,Ann,north\n2,Bob,south\n3,Cid,north\n",
         "ref/rates.json": '[{"region": "north", "rate": 1.5}, {"region": "south", "rate": 2}]'})
    workbook = openpyxl.Workbook()
    workbook.active.append(["code", "label", "since"])
    workbook.active.append([1, "gold", datetime(2024, 1, 1)])
    workbook.active.append([2, "silver", datetime(2024, 2, 1)])
    workbook.save(job / "inputs" / "tiers.xlsx")
    code = sql("""
        CREATE TABLE summary AS
            SELECT c.name, sum(o.total) * r.rate * (getvariable('options')->>'$.factor')::INT AS weighted,
                   max(o.day) AS last_day
            FROM orders o JOIN customers c ON c.id = o.customer_id JOIN rates r USING (region)
            WHERE c.region = getvariable('region')
            GROUP BY c.name, r.rate HAVING sum(o.total) >= getvariable('min_total');
        COPY (SELECT * FROM tiers) TO 'output/tiers_copy.csv' (HEADER);
        """,
        "SELECT count(*) AS customers, sum(weighted)::DECIMAL(10, 2) AS weighted, max(last_day) AS last_day, "
        "(SELECT label FROM tiers WHERE since = TIMESTAMP '2024-02-01') AS tier FROM summary",
        ["summary"])

    result = run_job("sql", code, job, LIMITS)

    assert result.ok, log(job, "stderr")
    assert json.loads((job / "result.json").read_text()) == {
        "customers": 1, "weighted": 76.5, "last_day": "2024-01-03", "tier": "silver"}
    assert (job / "output" / "summary.csv").read_text() == "name,weighted,last_day\nAnn,76.5,2024-01-03\n"
    assert duckdb.sql(f"SELECT * FROM read_parquet('{job}/output/summary.parquet')").fetchall() == [
        ("Ann", 76.5, datetime(2024, 1, 3).date())]
    assert (job / "output" / "tiers_copy.csv").read_text().splitlines()[0] == "code,label,since"
    assert log(job, "stderr") == ""


@pytest.mark.parametrize(("query", "expected"), [
    ("SELECT 1 AS a, 2 AS a, 'nan'::DOUBLE AS n", {"a": 1, "a_1": 2, "n": None}),
    ("SELECT i FROM range(2) t(i)", [{"i": 0}, {"i": 1}]),
    ("SELECT 1 AS i WHERE false", []),
])
def test_sql_result_is_an_object_for_one_row_else_a_list(tmp_path, query, expected):
    job = job_folder(tmp_path)
    result = run_job("sql", sql("", query), job, LIMITS)
    assert result.ok, log(job, "stderr")
    assert json.loads((job / "result.json").read_text()) == expected


@pytest.mark.parametrize("script", [
    "CREATE TABLE t AS SELECT * FROM read_text('/etc/passwd')",
    "CREATE TABLE t AS SELECT * FROM read_csv('inputs/../../outside.csv')",
    "COPY (SELECT 1) TO '{tmp}/escape.csv'",
    "COPY (SELECT 1) TO 'params.json'",
    "SET enable_external_access = true",
    "LOAD httpfs",
])
def test_sql_cannot_reach_outside_the_job_folder(tmp_path, script):
    (tmp_path / "outside.csv").write_text("secret\n42\n")
    job = job_folder(tmp_path)
    result = run_job("sql", sql(script.format(tmp=tmp_path), "SELECT 1 AS one"), job, LIMITS)
    assert (result.ok, result.exit_code, result.error) == (False, 1, "exited with status 1")
    assert log(job, "stderr").startswith("error: ")
    assert str(job) not in log(job, "stderr")
    assert not (tmp_path / "escape.csv").exists()
    assert json.loads((job / "params.json").read_text()) == {}


def test_sql_error_is_reported_on_stderr(tmp_path):
    job = job_folder(tmp_path)
    result = run_job("sql", sql("", "SELECT * FROM missing_table"), job, LIMITS)
    assert (result.ok, result.error) == (False, "exited with status 1")
    assert "missing_table" in log(job, "stderr")


def test_input_table_names(tmp_path):
    for name in ("Sales Data.csv", "a/sales_data.json", "b/Sales-Data.CSV", "2024.parquet", "x.xlsx", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert [(table, path.relative_to(tmp_path).as_posix()) for table, path in input_tables(tmp_path)] == [
        ("_2024", "2024.parquet"), ("sales_data", "Sales Data.csv"), ("sales_data_2", "a/sales_data.json"),
        ("sales_data_3", "b/Sales-Data.CSV"), ("x", "x.xlsx")]


# --- code definitions -------------------------------------------------------------------------------------

def test_validate_code_normalises():
    assert validate_code("python", {"files": {"main.py": "print(1)"}}) == {
        "files": {"main.py": "print(1)"}, "entry_point": "main.py"}
    assert validate_code("sql", {"result": "SELECT 1"}) == {"script": "", "outputs": [], "result": "SELECT 1"}


@pytest.mark.parametrize(("runner", "code", "message"), [
    ("python", {"files": {"../x.py": ""}, "entry_point": "../x.py"}, "must not contain .."),
    ("python", {"files": {"a/../../x.py": ""}}, "must not contain .."),
    ("python", {"files": {"/etc/x.py": ""}}, "must be relative"),
    ("python", {"files": {"a\\x.py": ""}}, "not \\\\"),
    ("python", {"files": {"a//x.py": ""}}, "empty or . segments"),
    ("python", {"files": {"./x.py": ""}}, "empty or . segments"),
    ("python", {"files": {"main.py": "", "lib": "", "lib/x.py": ""}}, "both a file and a folder"),
    ("python", {"files": {"run.py": ""}}, "entry_point 'main.py' must be one of the files"),
    ("python", {"files": {"main.py": ""}, "entry_point": "other.py"}, "entry_point 'other.py'"),
    ("python", {"files": {}}, "non-empty object"),
    ("python", {"files": {"main.py": 1}}, "must be text"),
    ("python", {"files": {"main.py": "x" * (5 << 20), "b.py": "y"}}, "more than 5 MB"),
    ("python", {"files": {"main.py": ""}, "entrypoint": "main.py"}, "unknown code field"),
    ("sql", {"result": "SELECT 1", "outputs": ["1abc"]}, "not a valid table name"),
    ("sql", {"result": "SELECT 1", "outputs": ["a-b"]}, "not a valid table name"),
    ("sql", {"result": "SELECT 1", "outputs": ['x"; DROP']}, "not a valid table name"),
    ("sql", {"result": "SELECT 1", "outputs": ["t", "T"]}, "same table twice"),
    ("sql", {"script": "CREATE TABLE t AS SELECT 1"}, "result is required"),
    ("sql", {"result": "  "}, "result is required"),
    ("sql", {"result": "SELECT 1; SELECT 2"}, "single SELECT"),
    ("sql", {"result": "CREATE TABLE t (a INT)"}, "single SELECT"),
    ("sql", {"script": "SELEC 1", "result": "SELECT 1"}, "script: Parser Error"),
    ("sql", ["SELECT 1"], "must be a JSON object"),
    ("r", {}, "unknown runner"),
])
def test_validate_code_errors(runner, code, message):
    with pytest.raises(RepositoryCodeError, match=message):
        validate_code(runner, code)
