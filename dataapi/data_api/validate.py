"""Validation of an endpoint's SQL when it is saved (admin API, ``dataapi endpoints apply``): its placeholders
against the declared parameters, then the statement bound, never run, on the company's current database.

Binding is what DuckDB does before it runs a query: syntax, tables, columns, functions and types are resolved,
so a misspelt column or a missing table is refused at save rather than when a caller runs the endpoint. The
statement is described (``DESCRIBE <select>``): no row is read, and the result's column names and types come
back, stored with the endpoint for the catalog.

The company's database is opened read-only with the hardening of the query path (one allowed folder, external
access off, locked configuration): DuckDB shares one instance per file within a process, so when the API hosts a
query worker both see the same, already hardened, instance. DuckDB is imported on the first validation, not with
this module (the API loads it when a definition is saved, never to serve a query).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataapi.data_api import sqlguard
from dataapi.data_api.column_types import column_type
from dataapi.data_api.param_values import bind_value
from dataapi.data_api.params import DefinitionError, ParamSpec, referenced_params
from dataapi.identity.service import valid_slug
from dataapi.json_values import unique_names

if TYPE_CHECKING:
    import duckdb

_VERSION_RE = re.compile(r"db-(\d{6,})\.duckdb")
_LINE_RE = re.compile(r"\n\nLINE (\d+): (.*)\n( *)\^+", re.DOTALL)
_OPEN_LOCK = threading.Lock()  # opening and hardening one file's instance must not interleave


class SqlProblem(DefinitionError):
    """The endpoint's SQL does not prepare: it is not one SELECT, names what does not exist, or its placeholders
    do not match the declared parameters. ``line``/``column`` (1-based) are where DuckDB points, when it does."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        where = f" (line {line}, column {column})" if line is not None and column is not None else ""
        super().__init__(message + where)
        self.line, self.column = line, column


def check_placeholders(sql: str, specs: tuple[ParamSpec, ...] | list[ParamSpec], *, unused: bool = True) -> None:
    """Every ``$name`` of the SQL is declared; with ``unused``, every declared parameter is used."""
    refs = referenced_params(sql)
    names = {s.name for s in specs}
    for ref in sorted(refs):
        if ref[0].isdigit():
            raise SqlProblem(f"positional placeholder '${ref}' is not supported; use $name")
        if ref not in names:
            raise SqlProblem(f"the SQL uses '${ref}' but no parameter '{ref}' is declared")
    if unused:
        for spec in specs:
            if spec.name not in refs:
                raise SqlProblem(f"parameter '{spec.name}' is declared but the SQL does not use ${spec.name}")


def check_sql(sql: str) -> None:
    """One SELECT that calls nothing endpoint SQL may not call (``sqlguard``), as ``SqlProblem``."""
    try:
        sqlguard.check(sql)
    except sqlguard.SqlNotAllowed as e:
        raise SqlProblem(f"'sql': {e.message}") from None


def describe_sql(data_dir: Path, company: str, sql: str, specs: tuple[ParamSpec, ...] | list[ParamSpec], *,
                 memory_limit: str = "1GB", threads: int = 2) -> list[dict[str, str]]:
    """The result columns (``[{"name", "type", "duckdb_type"}]``: the type as results name it, and DuckDB's) of
    ``sql`` bound on the company's current
    database (an empty one before its first load); raises ``SqlProblem`` with DuckDB's message."""
    import duckdb

    check_sql(sql)
    data_dir = Path(data_dir).resolve()
    if not valid_slug(company):
        raise ValueError(f"invalid company slug {company!r}")
    con = _connect(data_dir / company, memory_limit, threads)
    try:
        cursor = con.cursor()
        statements = cursor.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise SqlProblem("endpoint SQL must be a single SELECT statement")
        used = set(statements[0].named_parameters)
        values = {s.name: _sample(s) for s in specs if s.name in used}
        try:
            # A newline, not a space: DuckDB's line numbers then point into the SQL as written (one line down).
            rows = cursor.execute("DESCRIBE\n" + sql, values).fetchall()
        except duckdb.Error as e:
            raise _problem(str(e), data_dir) from None
        finally:
            cursor.close()
    finally:
        con.close()
    return [{"name": name, "type": column_type(str(duck_type)), "duckdb_type": str(duck_type)}
            for name, duck_type in zip(unique_names([str(r[0]) for r in rows]), (r[1] for r in rows), strict=True)]


def _sample(spec: ParamSpec) -> Any:
    """The value bound for a parameter: its default, an enum's first value, else NULL, as when a caller omits
    it (a made-up value could fail a cast the SQL makes)."""
    if spec.default is not None:
        return bind_value(spec, spec.default)
    if spec.allowed_values:
        return spec.allowed_values[0]
    return None


def _problem(message: str, data_dir: Path) -> SqlProblem:
    """DuckDB's message without server paths, and the line and column its ``LINE n:`` excerpt points at."""
    line = column = None
    m = _LINE_RE.search(message)
    if m is not None:
        shown_line = int(m.group(1)) - 1  # "DESCRIBE\n" came first
        prefix = len(f"LINE {m.group(1)}: ")
        offset = len(m.group(3)) - prefix
        excerpt = m.group(2)
        if shown_line >= 1 and offset >= 0 and not excerpt.startswith("..."):
            line, column = shown_line, offset + 1
        message = message[:m.start()]
    message = " ".join(message.replace(str(data_dir), "<data>").split())
    return SqlProblem(message, line, column)


def _connect(cdir: Path, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    import duckdb

    files = cdir / "files"
    for _ in range(3):  # a load may switch versions and delete the one CURRENT named a moment ago
        name = _current(cdir)
        try:
            with _OPEN_LOCK:
                con = duckdb.connect(str(cdir / name), read_only=True) if name else duckdb.connect(":memory:")
                harden(con, cdir, files, memory_limit, threads)
            return con
        except duckdb.IOException:
            if name is None or (cdir / name).exists():
                raise
    raise SqlProblem("the company database changed repeatedly while validating; try again")


def _current(cdir: Path) -> str | None:
    try:
        name = (cdir / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    if not _VERSION_RE.fullmatch(name):
        raise RuntimeError(f"{cdir / 'CURRENT'} does not name a database version: {name!r}")
    return name


def hardening_statements(cdir: Path, files: Path, memory_limit: str, threads: int) -> tuple[str, ...]:
    """What a company database is opened with before any endpoint SQL touches it (see
    ``activities.duck.databases``): GLOBAL, so the cursors each query runs on share it; locked last."""
    return (
        f"SET GLOBAL temp_directory = {_literal(str(cdir / 'tmp'))}",
        f"SET GLOBAL allowed_directories = [{_literal(f'{files}/')}]",  # the trailing / keeps files-x/ out
        # After allowed_directories: DuckDB refuses to change that list once external access is off.
        "SET GLOBAL enable_external_access = false",
        "SET GLOBAL autoinstall_known_extensions = false",
        "SET GLOBAL autoload_known_extensions = false",
        "SET GLOBAL allow_community_extensions = false",
        "SET GLOBAL python_enable_replacements = false",  # else `FROM x` may scan a Python variable named x
        "SET GLOBAL TimeZone = 'UTC'",  # TIMESTAMPTZ values come back in UTC, whatever the host's zone
        # DuckDB's allocator (jemalloc) otherwise keeps the pages of a big query's vectors for good: its
        # background thread gives them back to the system soon after the query.
        "SET GLOBAL allocator_background_threads = true",
        f"SET GLOBAL memory_limit = {_literal(memory_limit)}",
        f"SET GLOBAL threads = {int(threads)}",
        "SET GLOBAL lock_configuration = true",  # last: from here on no SET, RESET or PRAGMA can undo the above
    )


def harden(con: duckdb.DuckDBPyConnection, cdir: Path, files: Path, memory_limit: str, threads: int) -> None:
    """Hardens a freshly opened instance; one this process already opened is checked to be hardened."""
    row = con.execute("SELECT current_setting('lock_configuration')").fetchone()
    if row is not None and row[0]:
        row = con.execute("SELECT current_setting('enable_external_access'), "
                          "current_setting('allowed_directories')").fetchone()
        if row is None or row[0] or f"{files}/" not in row[1]:
            raise RuntimeError(f"{cdir.name}: database opened elsewhere in this process without hardening")
        return
    for statement in hardening_statements(cdir, files, memory_limit, threads):
        con.execute(statement)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
