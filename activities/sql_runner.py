"""Runs a SQL repository inside its job folder: ``python -I sql_runner.py <job_dir>``.

A standalone script (no project imports: it runs isolated, with only the standard library and site-packages on
``sys.path``), started by ``activities.launchers`` in its own process. It reads ``repo/sql.json`` (``script``,
``outputs``, ``result``) and ``params.json``, then in an in-memory DuckDB:

1. locks the connection: files can be read and written only under ``inputs/`` and ``output/`` (DuckDB spills
   to ``.tmp/``), no extension can be installed or loaded, no setting changed; memory and threads are capped;
2. loads every file under ``inputs/`` as a table named after its file stem (lower-cased, other characters
   than letters, digits and ``_`` turned into ``_``; in sorted path order a repeated name gets ``_2``, ``_3``…);
   CSV, JSON and Parquet through DuckDB's readers, XLSX (first sheet, first row as header) through openpyxl;
3. sets each param as a variable (``getvariable('name')``): scalars as they are, lists and objects as JSON;
4. runs the script, writes every output table to ``output/<table>.csv`` and ``output/<table>.parquet``, and
   writes ``result.json`` from the result query: one row as an object, any other count as a list of objects
   (dates and times ISO 8601, decimals as numbers, NaN and infinities as null, intervals as ISO 8601
   durations, as in Data API results).

Its one project module is ``dataapi/json_values.py``: imported from the installed project, or inside the sandbox
(where the project is absent) from beside this file, where the sandbox mounts it.

Any failure prints ``error: <message>`` on stderr and exits with status 1; running out of memory prints one
line, ``MemoryError: <message>``, so that the parent names it as it does for a Python job.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import resource
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import duckdb
import openpyxl

try:  # the installed project: imported as activities.sql_runner, or run unsandboxed
    from dataapi.json_values import iso_duration, unique_names
except ImportError:  # run in the sandbox, where the project is absent: the module mounted beside this file
    sys.path.insert(0, str(Path(__file__).parent))
    from json_values import iso_duration, unique_names  # type: ignore[import-not-found,no-redef]

READERS = {".csv": "read_csv_auto", ".json": "read_json_auto", ".parquet": "read_parquet"}
VARIABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_THREADS = 4  # each DuckDB thread adds stacks and buffers to the address space the memory limit caps
_NOT_NAME = re.compile(r"[^a-z0-9_]")


class JobError(Exception):
    """A problem with the job's own files or definition; the message is printed as is."""


def main(argv: list[str]) -> int:
    job_dir = Path(argv[1]).resolve()
    try:
        run(job_dir)
    except (JobError, duckdb.Error) as e:
        message = str(e).replace(f"{job_dir}/", "")  # paths relative to the job folder, as the script wrote them
        if isinstance(e, duckdb.OutOfMemoryException):
            # One line, last, as Python ends on a MemoryError; DuckDB's tips (raise the limit...) do not apply.
            message = f"MemoryError: {message.splitlines()[0]}"
        else:
            message = f"error: {message}"
        print(message, file=sys.stderr)
        return 1
    return 0


def run(job_dir: Path) -> None:
    code = json.loads((job_dir / "repo" / "sql.json").read_text(encoding="utf-8"))
    params_file = job_dir / "params.json"
    try:
        params = json.loads(params_file.read_text(encoding="utf-8")) if params_file.exists() else {}
    except ValueError:
        raise JobError("params.json is not valid JSON") from None
    if not isinstance(params, dict):
        raise JobError("params.json must hold a JSON object")
    con = duckdb.connect(":memory:")
    try:
        _lock_down(con, job_dir)  # first: even our own loads go through the same rules
        for table, path in input_tables(job_dir / "inputs"):
            _load(con, table, path)
        for name, value in params.items():
            _set_variable(con, name, value)
        if code["script"].strip():
            con.execute(code["script"])
        for table in code["outputs"]:
            for suffix, options in ((".csv", "FORMAT csv, HEADER"), (".parquet", "FORMAT parquet")):
                target = _literal(str(job_dir / "output" / f"{table}{suffix}"))
                con.execute(f'COPY "{table}" TO {target} ({options})')  # names are identifiers (validated)
        (job_dir / "result.json").write_text(_result_json(con, code["result"]), encoding="utf-8")
    finally:
        con.close()


def input_tables(inputs: Path) -> list[tuple[str, Path]]:
    """(table name, file) for every loadable input, in sorted path order."""
    files = sorted((p for p in inputs.rglob("*") if p.is_file() and p.suffix.lower() in (*READERS, ".xlsx")),
                   key=lambda p: p.relative_to(inputs).as_posix())
    used: set[str] = set()
    tables = []
    for path in files:
        base = _NOT_NAME.sub("_", path.stem.lower()) or "_"
        if base[0].isdigit():
            base = f"_{base}"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        tables.append((name, path))
    return tables


def _load(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        _load_xlsx(con, table, path)
    else:
        reader = READERS[suffix]  # one of three names; the table name is made of [a-z0-9_]
        con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM {reader}($path)', {"path": str(path)})  # noqa: S608


def _load_xlsx(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """The first sheet, its first row as the header; a column's type is what all its values share, else text."""
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises all sorts (zipfile, KeyError, ValueError) for a broken workbook
        raise JobError(f"{path.name}: not a readable XLSX workbook ({e})") from None
    try:
        rows = [row for row in workbook.worksheets[0].iter_rows(values_only=True) if any(v is not None for v in row)]
    finally:
        workbook.close()
    if not rows:
        raise JobError(f"{path.name}: the first sheet is empty")
    width = max(len(row) for row in rows)
    header, body = rows[0], [row + (None,) * (width - len(row)) for row in rows[1:]]
    columns = [[row[i] for row in body] for i in range(width)]
    names = unique_names([str(header[i]) if i < len(header) and header[i] is not None else f"column{i + 1}"
                     for i in range(width)])
    selects, values = [], []
    for i, (name, column) in enumerate(zip(names, columns, strict=True), 1):
        sql_type = _xlsx_type(column)
        if sql_type == "VARCHAR":
            column = [None if v is None else str(v) for v in column]
        selects.append(f"unnest(${i}::{sql_type}[]) AS {_identifier(name)}")
        values.append(column)
    # unnest() of several lists in one SELECT zips them: one statement loads the whole sheet.
    con.execute(f'CREATE TABLE "{table}" AS SELECT {", ".join(selects)}', values)


def _xlsx_type(values: list) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return "BOOLEAN"
    if kinds == {int}:
        return "BIGINT" if all(-(2**63) <= v < 2**63 for v in values if v is not None) else "VARCHAR"
    if kinds and kinds <= {int, float}:
        return "DOUBLE"
    for python_type, sql_type in ((datetime, "TIMESTAMP"), (date, "DATE"), (time, "TIME")):
        if kinds == {python_type}:
            return sql_type
    return "VARCHAR"


def _set_variable(con: duckdb.DuckDBPyConnection, name: str, value: object) -> None:
    if not VARIABLE_RE.fullmatch(name):
        raise JobError(f"param {name!r} cannot be a SQL variable: use letters, digits and _ (max. 63)")
    if isinstance(value, dict | list):
        con.execute(f'SET VARIABLE "{name}" = $value::JSON', {"value": json.dumps(value)})
    else:
        con.execute(f'SET VARIABLE "{name}" = $value', {"value": value})


def _lock_down(con: duckdb.DuckDBPyConnection, job_dir: Path) -> None:
    settings = [f"SET threads = {min(os.cpu_count() or 1, MAX_THREADS)}",
                f"SET temp_directory = {_literal(str(job_dir / '.tmp'))}"]  # spills stay in the job folder
    # The parent caps the address space (RLIMIT_AS); DuckDB must stay well below it to fail (or spill) cleanly
    # rather than crash on an allocation outside its buffer manager.
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        settings.append(f"SET memory_limit = '{soft // 2}B'")
    allowed = ", ".join(_literal(f"{job_dir / sub}/") for sub in ("inputs", "output"))  # the / keeps output-x/ out
    for statement in (
        *settings,
        f"SET allowed_directories = [{allowed}]",
        # After allowed_directories: DuckDB refuses to change that list once external access is off.
        "SET enable_external_access = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET python_enable_replacements = false",  # else `FROM code` could scan this script's variables
        "SET lock_configuration = true",  # last: no SET, RESET or PRAGMA can undo the above
    ):
        con.execute(statement)


def _result_json(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    relation = con.sql(sql)  # a single SELECT (checked when the repository was saved)
    names = unique_names(relation.columns)
    rows = [dict(zip(names, (_plain(v) for v in row), strict=True)) for row in relation.fetchall()]
    return json.dumps(rows[0] if len(rows) == 1 else rows, ensure_ascii=False, allow_nan=False)


def _plain(v: object) -> object:
    """A DuckDB value as JSON: dates and times ISO, decimals as numbers, NaN and infinities null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, timedelta):
        return iso_duration(v)
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
