"""Per-company DuckDB: hardened, cached, read-only execution of endpoint SQL, and versioned data loading.

Layout under the data directory::

    <company>/CURRENT            names the active database file (replaced atomically)
    <company>/db-000042.duckdb   database versions; only the current one is kept
    <company>/files/             Parquet/CSV/JSON the company's SQL may read (by absolute path)
    <company>/tmp/               DuckDB spill files

DuckDB lets one process write a file or many read it, never both, so the long-running worker (reading) and
``dataapi data load`` (writing) never share a file: a load copies the current version to the next one, writes
there and then switches CURRENT. Readers notice the switch with one stat() per query and reopen; a query
still running on the old version keeps its open file (Linux keeps an unlinked file alive while it is open).

Endpoint SQL is written by the company's own admins but runs in our worker, so every connection it sees is
read-only, may read only the company's ``files/`` folder, cannot load extensions and cannot change settings;
and only a single SELECT statement is accepted (DuckDB would otherwise let COPY and EXPORT write into
``files/``, the one folder it may access), one that calls none of the introspection functions that would tell
the server's paths and settings (``dataapi.data_api.sqlguard``). A result is serialised in byte-bounded batches and
refused (``ResultTooLarge``) as soon as it passes ``max_result_bytes``, so no process holds an oversized one.
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson

from activities.json_values import iso_duration, unique_names
from dataapi.data_api import sqlguard
from dataapi.data_api.params import NAME_RE
from dataapi.identity.service import valid_slug

VERSION_RE = re.compile(r"db-(\d{6,})\.duckdb")
_OLD_FILE_RE = re.compile(r"db-\d{6,}\.duckdb(?:\.wal)?")
_INT64 = range(-(2**63), 2**63)

# DuckDB keeps one instance per database file per process and hands it to every connect() of that file, so
# opening and hardening must not interleave (the second opener finds the configuration already locked).
_OPEN_LOCK = threading.Lock()


class QueryFailed(Exception):
    """The SQL failed (syntax, binding, runtime). The message is safe to show the caller."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SqlRefused(QueryFailed):
    """The SQL calls a function endpoint SQL may not use (``dataapi.data_api.sqlguard``)."""


DEFAULT_MAX_RESULT_BYTES = 32 << 20


class ResultTooLarge(QueryFailed):
    """The result's JSON passed the byte limit while it was being serialised; nothing more was fetched."""

    def __init__(self, limit: int):
        super().__init__(f"The result is larger than {_human_bytes(limit)}, the most one execution may return: "
                         "narrow the query (filters, aggregation, fewer columns) or lower max_rows")
        self.limit = limit


def _human_bytes(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


class QueryInterrupted(Exception):
    """The query was stopped through the interrupt function handed to ``on_start``."""


class LoadFailed(Exception):
    """A data load was refused (bad table name, unreadable file, DuckDB error)."""


@dataclass
class QueryResult:
    columns: list[dict]  # [{"name": ..., "type": ...}], in order
    rows_json: bytes  # JSON array of objects, keys in column order
    row_count: int
    truncated: bool


@dataclass
class _Shape:
    """What one SQL text with parameters of given types needs, worked out on its first run on a database
    version: its result's names and types and the statements to run (parsed once, reused by every cursor)."""

    names: list[str]
    duck_types: list[str]
    parameters: set[str]  # the named parameters the statement uses
    json_rows: duckdb.Statement | None  # each row as JSON written by DuckDB, when the column types allow
    python_rows: duckdb.Statement  # rows for the Python path (decimals as DOUBLE)
    small: bool = False  # its last result was small: the Python path costs less (no JSON wrapping to plan)


@dataclass
class _Open:
    stamp: tuple | None  # identity of the CURRENT file it was opened from (None: no database yet)
    con: duckdb.DuckDBPyConnection
    shapes: dict[tuple, _Shape] = field(default_factory=dict)


class CompanyDatabases:
    def __init__(self, data_dir: Path, memory_limit: str = "1GB", threads: int = 2,
                 max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES):
        self.data_dir = Path(data_dir).resolve()
        self.memory_limit = memory_limit
        self.threads = threads
        self.max_result_bytes = max_result_bytes
        self._lock = threading.Lock()
        self._open: dict[str, _Open] = {}

    def company_dir(self, slug: str) -> Path:
        if not valid_slug(slug):  # the slug becomes a path: never let "../x" through
            raise ValueError(f"invalid company slug {slug!r}")
        path = self.data_dir / slug
        path.mkdir(parents=True, exist_ok=True)
        return path

    def files_dir(self, slug: str) -> Path:
        path = self.company_dir(slug) / "files"
        path.mkdir(exist_ok=True)
        return path

    # --- queries --------------------------------------------------------------------------------------

    def run(self, slug: str, sql: str, params: dict, max_rows: int,
            on_start: Callable[[Callable[[], None]], None] | None = None) -> QueryResult:
        """Runs one SELECT with ``$name`` parameters bound; at most ``max_rows`` rows come back."""
        cursor, shapes = self._cursor(slug)
        stop = _Interrupt(cursor)
        refused = False
        try:
            if on_start is not None:
                on_start(stop)
            key = (sql, *sorted((name, type(value)) for name, value in params.items()))
            shape = shapes.get(key)
            if shape is None:
                shape = shapes[key] = _shape(cursor, sql, params)
                if len(shapes) > _SHAPES_PER_DATABASE:
                    shapes.pop(next(iter(shapes)))
            # DuckDB refuses values for parameters the statement does not use.
            bind = {name: params[name] for name in shape.parameters if name in params}
            if stop.requested:  # DuckDB clears an interrupt when a query starts: an early one would be lost
                raise QueryInterrupted()
            as_json = shape.json_rows is not None and not shape.small
            cursor.execute(shape.json_rows if as_json else shape.python_rows, bind)
            serialise = _serialise_json_rows if as_json else _serialise
            result = serialise(cursor, shape.names, shape.duck_types, max_rows, self.max_result_bytes)
            shape.small = result.row_count <= SMALL_RESULT_ROWS
        except ResultTooLarge:
            refused = True
            raise
        except duckdb.Error as e:
            if stop.requested or isinstance(e, duckdb.InterruptException):
                raise QueryInterrupted() from None
            raise QueryFailed(self._scrub(str(e))) from None
        finally:
            stop.close()
            if refused:
                _release_freed_memory()
        if stop.requested:  # DuckDB may finish before noticing; the caller asked for nothing
            raise QueryInterrupted()
        return result

    def tables(self, slug: str) -> list[str]:
        cursor, _ = self._cursor(slug)
        try:
            return [name for (name,) in cursor.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "ORDER BY table_name").fetchall()]
        finally:
            cursor.close()

    def _scrub(self, message: str) -> str:
        # DuckDB echoes file paths; the caller must not learn where the data lives on our disk.
        return message.replace(str(self.data_dir), "<data>")

    def _cursor(self, slug: str) -> tuple[duckdb.DuckDBPyConnection, dict[tuple, _Shape]]:
        """A fresh cursor (its own DuckDB connection: own transaction, own interrupt) on the company's
        cached database, reopened when CURRENT changed, and the shapes of the queries run on that version.
        Cursors share the instance's locked configuration."""
        stamp = _stamp(self.data_dir / slug / "CURRENT") if valid_slug(slug) else None
        with self._lock:
            entry = self._open.get(slug)
            if entry is not None and entry.stamp == stamp:
                return entry.con.cursor(), entry.shapes
        con = self._connect(slug)
        with self._lock:
            # The previous connection is dropped, not closed: closing would kill the cursors of queries
            # still running on it. DuckDB closes the file when the last of them is gone.
            entry = self._open[slug] = _Open(stamp, con)
            return con.cursor(), entry.shapes

    def _connect(self, slug: str) -> duckdb.DuckDBPyConnection:
        cdir, files = self.company_dir(slug), self.files_dir(slug)
        for _ in range(3):  # a load may switch versions and delete the one CURRENT named a moment ago
            name = _read_current(cdir)
            try:
                with _OPEN_LOCK:
                    if name is None:  # no data loaded yet: queries can still read files
                        con = duckdb.connect(":memory:")
                    else:
                        con = duckdb.connect(str(cdir / name), read_only=True)
                    self._harden(con, cdir, files)
                return con
            except duckdb.IOException:
                if name is None or (cdir / name).exists():
                    raise
        raise QueryFailed("the company database changed repeatedly while opening it; try again")

    def _harden(self, con: duckdb.DuckDBPyConnection, cdir: Path, files: Path) -> None:
        (locked,) = con.execute("SELECT current_setting('lock_configuration')").fetchone()
        if locked:  # the instance this process already opened (and hardened) for this file
            (external, allowed) = con.execute(
                "SELECT current_setting('enable_external_access'), current_setting('allowed_directories')"
            ).fetchone()
            if external or f"{files}/" not in allowed:
                raise RuntimeError(f"{cdir.name}: database opened elsewhere in this process without hardening")
            return
        # GLOBAL: a plain SET of a setting that has a session scope binds only this connection, not the
        # cursors each query runs on.
        for statement in (
            f"SET GLOBAL temp_directory = {_literal(str(cdir / 'tmp'))}",
            f"SET GLOBAL allowed_directories = [{_literal(f'{files}/')}]",  # the trailing / keeps files-x/ out
            # After allowed_directories: DuckDB refuses to change that list once external access is off.
            "SET GLOBAL enable_external_access = false",
            "SET GLOBAL autoinstall_known_extensions = false",
            "SET GLOBAL autoload_known_extensions = false",
            "SET GLOBAL allow_community_extensions = false",
            "SET GLOBAL python_enable_replacements = false",  # else `FROM x` may scan a Python variable named x
            "SET GLOBAL TimeZone = 'UTC'",  # TIMESTAMPTZ values come back in UTC, whatever the host's zone
            # DuckDB's allocator (jemalloc) otherwise keeps the pages of a big query's vectors for good: with
            # its background thread they go back to the system within seconds of the query.
            "SET GLOBAL allocator_background_threads = true",
            f"SET GLOBAL memory_limit = {_literal(self.memory_limit)}",
            f"SET GLOBAL threads = {int(self.threads)}",
            "SET GLOBAL lock_configuration = true",  # last: from here on no SET, RESET or PRAGMA can undo the above
        ):
            con.execute(statement)

    # --- loading --------------------------------------------------------------------------------------

    def load_file(self, slug: str, table: str, path: Path, replace: bool = True) -> int:
        """Loads a CSV, Parquet or JSON file into ``table`` of a new database version; returns its row
        count (rows added when appending). Loads of one company are serialised by a lock file."""
        if not NAME_RE.fullmatch(table):
            raise LoadFailed(f"table name {table!r} must match {NAME_RE.pattern}")
        path = Path(path)
        if not path.is_file():
            raise LoadFailed(f"{path} is not a file")
        reader = _reader(path)
        cdir = self.company_dir(slug)
        with _exclusive(cdir / "load.lock"):
            current = _read_current(cdir)
            target = cdir / f"db-{_next_version(cdir):06d}.duckdb"
            if current is not None:
                shutil.copyfile(cdir / current, target)  # safe: readers never write to it
            try:
                count = _load(target, table, reader, path, replace)
            except duckdb.Error as e:
                target.unlink(missing_ok=True)
                raise LoadFailed(str(e)) from None
            _write_current(cdir, target.name)
            for old in cdir.iterdir():
                if _OLD_FILE_RE.fullmatch(old.name) and not old.name.startswith(target.name):
                    old.unlink(missing_ok=True)
        return count


def _load(target: Path, table: str, reader: str, path: Path, replace: bool) -> int:
    ident = f'"{table}"'  # NAME_RE already excludes quotes; quoting also covers reserved words
    con = duckdb.connect(str(target))
    try:
        exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
                             [table]).fetchone()[0]
        source = f"SELECT * FROM {reader}($path)"  # noqa: S608 - reader is one of three names, path is bound
        if replace or not exists:
            con.execute(f"CREATE OR REPLACE TABLE {ident} AS {source}", {"path": str(path)})
            count = con.execute(f"SELECT count(*) FROM {ident}").fetchone()[0]  # noqa: S608 - NAME_RE
        else:
            count = con.execute(f"INSERT INTO {ident} BY NAME {source}", {"path": str(path)}).fetchone()[0]
        con.execute("CHECKPOINT")  # everything in the file itself: the next copy must not need a WAL
        return count
    finally:
        con.close()


def _reader(path: Path) -> str:
    """DuckDB's reader for the file, by content: Parquet magic, JSON's first character, else CSV."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "read_parquet"
    if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"[", b"{"):
        return "read_json_auto"  # an array or newline-delimited objects: DuckDB detects which
    return "read_csv_auto"


def _next_version(cdir: Path) -> int:
    versions = [int(m.group(1)) for p in cdir.iterdir() if (m := VERSION_RE.fullmatch(p.name))]
    return max(versions, default=0) + 1


def _read_current(cdir: Path) -> str | None:
    try:
        name = (cdir / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    if not VERSION_RE.fullmatch(name):
        raise RuntimeError(f"{cdir / 'CURRENT'} does not name a database version: {name!r}")
    return name


def _write_current(cdir: Path, name: str) -> None:
    tmp = cdir / f"CURRENT.tmp-{os.getpid()}"
    with tmp.open("w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, cdir / "CURRENT")  # atomic: readers see the old name or the new one


def _stamp(path: Path) -> tuple | None:
    """Cheap identity of CURRENT: os.replace gives it a new inode, so any switch changes the stamp."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed, even if we crash
        yield


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_SHAPES_PER_DATABASE = 1024  # endpoint SQL is a finite set; the oldest shape goes beyond this
SMALL_RESULT_ROWS = 64  # up to this many rows the Python path is cheaper than planning DuckDB's JSON wrapping


def _shape(cursor: duckdb.DuckDBPyConnection, sql: str, params: dict) -> _Shape:
    statement = _single_select(cursor, sql)
    try:
        sqlguard.check(sql)  # at execution too: SQL saved before a function was refused still cannot call it
    except sqlguard.SqlNotAllowed as e:
        raise SqlRefused(e.message) from None
    parameters = set(statement.named_parameters)
    relation = cursor.sql(statement, params={n: v for n, v in params.items() if n in parameters})  # bound, not run
    names, duck_types = unique_names(relation.columns), [str(t) for t in relation.types]
    as_json = _json_rows_sql(sql, names, duck_types)  # DuckDB writes each row's JSON: no Python objects per value
    python_rows = statement
    if any(t.startswith("DECIMAL") for t in duck_types):
        # DuckDB builds a Python Decimal per value (~2 µs each); as DOUBLE the rows come ~10x faster, and JSON
        # gets a number either way. Projections keep the query's row order.
        casts = ", ".join(f"#{i}::DOUBLE" if t.startswith("DECIMAL") else f"#{i}" for i, t in enumerate(duck_types, 1))
        python_rows = _single_select(cursor, f"SELECT {casts} FROM (\n{_strip_tail(sql)}\n)")  # noqa: S608
    return _Shape(names, duck_types, parameters, _single_select(cursor, as_json) if as_json else None, python_rows)


def _single_select(cursor: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    statements = cursor.extract_statements(sql)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise QueryFailed("An endpoint's SQL must be a single SELECT statement")
    return statements[0]


def _strip_tail(sql: str) -> str:
    """The SQL without trailing semicolons and comments, so that it can be wrapped in a subquery. (The tokens'
    positions are byte offsets into the UTF-8 text, not character indexes.)"""
    text = sql.encode()
    end = len(text)
    for position, kind in reversed(duckdb.tokenize(sql)):
        if kind != duckdb.token_type.comment and text[position:position + 1] != b";":
            break
        end = position
    return text[:end].decode()


class _Interrupt:
    """The interrupt function handed to ``on_start``; thread-safe, idempotent, harmless after the query.

    DuckDB forgets an interrupt when a query starts, so one that arrives early is remembered and checked
    just before the query runs. One landing in the microseconds between that check and DuckDB starting the
    query only takes effect when the query ends (``run`` then raises QueryInterrupted)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection):
        self._cursor = cursor
        self._lock = threading.Lock()
        self._closed = False
        self.requested = False

    def __call__(self) -> None:
        with self._lock:
            self.requested = True
            if not self._closed:
                self._cursor.interrupt()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cursor.close()


# --- results ------------------------------------------------------------------------------------------

_TYPE_NAMES = {
    "VARCHAR": "varchar", "ENUM": "varchar",
    "TINYINT": "integer", "SMALLINT": "integer", "INTEGER": "integer", "UTINYINT": "integer",
    "USMALLINT": "integer",
    "UINTEGER": "bigint", "BIGINT": "bigint", "UBIGINT": "bigint", "HUGEINT": "bigint", "UHUGEINT": "bigint",
    "BIGNUM": "bigint", "VARINT": "bigint",
    "DECIMAL": "decimal", "FLOAT": "double", "DOUBLE": "double",
    "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp", "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp", "TIMESTAMP_NS": "timestamp",
    "TIME": "time", "TIME WITH TIME ZONE": "time", "TIME_NS": "time",
    "BOOLEAN": "boolean", "UUID": "uuid", "BLOB": "blob", "JSON": "json",
    "STRUCT": "json", "MAP": "json", "UNION": "json",  # nested values come back as JSON arrays/objects
}


def _column_type(duck_type: str) -> str:
    if duck_type.endswith("]"):  # LIST (INTEGER[]) and ARRAY (INTEGER[3])
        return "json"
    base = duck_type.split("(", 1)[0]
    return _TYPE_NAMES.get(base, base.lower())


def _big_int(v: int | str) -> int | str:
    """Integers beyond signed 64-bit travel as strings: JSON parsers would mangle them as numbers."""
    return v if isinstance(v, int) and v in _INT64 else str(v)


# Values orjson cannot serialise as they come from DuckDB, converted per column before serialising.
_CONVERTERS: dict[str, Callable] = {
    "UBIGINT": _big_int, "HUGEINT": _big_int, "UHUGEINT": _big_int, "BIGNUM": _big_int, "VARINT": _big_int,
    "JSON": orjson.Fragment,  # already JSON text: embed it as is
    "TIME WITH TIME ZONE": time.isoformat,  # orjson refuses times with a zone
}


def _default(v):
    """orjson's fallback for the values it does not know, also inside lists and structs."""
    if isinstance(v, Decimal):
        return float(v)  # decimals are JSON numbers on the wire
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, timedelta):
        return iso_duration(v)
    raise TypeError


def _sanitise(v):
    """Slow path for nested values orjson refuses (huge integers, zoned times, decimals as map keys)."""
    if isinstance(v, dict):
        return {str(_sanitise(k)) if not isinstance(k, str) else k: _sanitise(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_sanitise(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool):
        return _big_int(v)
    if isinstance(v, time) and v.tzinfo is not None:
        return v.isoformat()
    if isinstance(v, Decimal | bytes | timedelta):
        return _default(v)
    return v


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_freed_memory() -> None:
    """Rows are fetched on executor threads, whose glibc arenas keep freed memory for themselves: after a
    refused result, tens of MB per thread would stay with the process. ``malloc_trim`` returns those pages."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


FETCH_CHUNK = 2048  # rows turned into Python objects at a time: a big result never exists as objects at once
FIRST_FETCH = 4  # rows of the first batch: their size sets how many rows the next batches take
BATCH_BYTES = 4 << 20  # the JSON size a batch aims at, so wide rows come a few at a time


def _collect(cursor: duckdb.DuckDBPyConnection, max_rows: int, max_bytes: int, names: list[str],
             duck_types: list[str], encode: Callable[[list[tuple]], bytes]) -> QueryResult:
    """Up to ``max_rows`` rows, fetched and encoded batch by batch; fetching one more than ``max_rows`` tells
    truncation. The JSON is counted as it grows: past ``max_bytes`` nothing more is fetched (ResultTooLarge),
    so at most ``max_bytes`` plus one batch is ever held."""
    parts: list[bytes] = []
    count, size, truncated, batch = 0, 2, False, FIRST_FETCH
    while True:
        wanted = min(batch, max_rows + 1 - count)
        rows = cursor.fetchmany(wanted)
        exhausted = len(rows) < wanted
        if count + len(rows) > max_rows:
            truncated, rows = True, rows[:max_rows - count]
        if rows:
            part = encode(rows)
            size += len(part) + 1
            if size > max_bytes:
                # The traceback keeps this frame: drop what it holds, then give the pages back (see below).
                parts.clear()
                rows = part = None
                raise ResultTooLarge(max_bytes)
            parts.append(part)
            count += len(rows)
            batch = max(1, min(FETCH_CHUNK, BATCH_BYTES * len(rows) // max(len(part), 1)))
        if truncated or exhausted:
            break
    columns = [{"name": n, "type": _column_type(t)} for n, t in zip(names, duck_types, strict=True)]
    return QueryResult(columns, b"[" + b",".join(parts) + b"]", count, truncated)


def _serialise(cursor: duckdb.DuckDBPyConnection, names: list[str], duck_types: list[str],
               max_rows: int, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> QueryResult:
    """Fetches up to ``max_rows`` and serialises them chunk by chunk: the peak memory of a 10,000-row result
    is one chunk of Python objects plus its JSON, not every row as objects."""
    converters = [(i, _CONVERTERS[t]) for i, t in enumerate(duck_types) if t in _CONVERTERS]
    option = orjson.OPT_NON_STR_KEYS if any("MAP(" in t for t in duck_types) else 0
    return _collect(cursor, max_rows, max_bytes, names, duck_types,
                    lambda rows: _rows_json(rows, names, converters, option)[1:-1])  # the objects, without [ ]


def _serialise_json_rows(cursor: duckdb.DuckDBPyConnection, names: list[str], duck_types: list[str],
                         max_rows: int, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> QueryResult:
    """The rows of a ``_json_rows_sql`` statement: one JSON object per row, written by DuckDB."""
    return _collect(cursor, max_rows, max_bytes, names, duck_types,
                    lambda rows: ",".join(r[0] for r in rows).encode())


# Column types whose values DuckDB's to_json writes as the Python path (orjson) would: the same JSON values.
# Doubles and decimals need NaN and infinities as null (orjson's), dates their infinities as Python's dates.
_JSON_NATIVE = {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "VARCHAR", "UUID", "DOUBLE", "DATE"}
_ROW = "__dataapi_row"


def _json_rows_sql(sql: str, names: list[str], duck_types: list[str]) -> str | None:
    """A statement giving each row of ``sql`` as one JSON object (``names`` are its keys), or None when a
    column's type is not one DuckDB writes exactly as the Python path does (the rows then go through Python).
    It saves building a Python object per value (and the GIL time that takes) on large results. ``names`` are
    unique case-insensitively (``unique_names``), as the quoted column names of this statement must be."""
    if _ROW in (n.lower() for n in names):  # our row alias as a column name: the Python path
        return None
    columns = []
    for i, (name, duck_type) in enumerate(zip(names, duck_types, strict=True), 1):
        if duck_type.startswith("DECIMAL"):
            value = f"#{i}::DOUBLE"  # a JSON number either way; never NaN
        elif duck_type == "DOUBLE":
            value = f"CASE WHEN isfinite(#{i}) THEN #{i} END"
        elif duck_type == "DATE":
            value = (f"CASE WHEN #{i} IS NULL OR isfinite(#{i}) THEN #{i} WHEN #{i} > DATE '2000-01-01' "
                     f"THEN DATE '9999-12-31' ELSE DATE '0001-01-01' END")
        elif duck_type in _JSON_NATIVE:
            value = f"#{i}"
        else:
            return None
        columns.append(f"{value} AS {_quote(name)}")
    return (f"SELECT to_json({_ROW})::VARCHAR FROM (SELECT {', '.join(columns)} FROM (\n{_strip_tail(sql)}\n))"  # noqa: S608
            f" AS {_ROW}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rows_json(rows: list[tuple], names: list[str], converters: list[tuple[int, Callable]], option: int) -> bytes:
    if converters:
        rows = [list(r) for r in rows]
        for i, convert in converters:
            for r in rows:
                if r[i] is not None:
                    r[i] = convert(r[i])
    objects = [dict(zip(names, r, strict=True)) for r in rows]
    try:
        return orjson.dumps(objects, default=_default, option=option)
    except TypeError:
        return orjson.dumps(_sanitise(objects), default=_default)
