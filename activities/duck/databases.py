"""``CompanyDatabases``: the worker's read side of the company databases (``versions`` is the write side).

One DuckDB connection per company, hardened once and cached; every query runs on its own cursor (its own
transaction and interrupt) and is reopened on the new file when a load switches CURRENT.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from activities.duck import versions
from activities.duck.errors import QueryFailed, QueryInterrupted, ResultTooLarge, caller_message
from activities.duck.serialise import DEFAULT_MAX_RESULT_BYTES, QueryResult, serialise_json_rows, serialise_rows
from activities.duck.shapes import SMALL_RESULT_ROWS, Shape, first_rows, shape_of
from activities.duck.stored import write_parquet
from dataapi.data_api.validate import harden
from dataapi.identity.service import valid_slug

# DuckDB keeps one instance per database file per process and hands it to every connect() of that file, so
# opening and hardening must not interleave (the second opener finds the configuration already locked).
_OPEN_LOCK = threading.Lock()
_SHAPES_PER_DATABASE = 1024  # endpoint SQL is a finite set; the oldest shape goes beyond this


@dataclass
class _Open:
    stamp: tuple | None  # identity of the CURRENT file it was opened from (None: no database yet)
    con: duckdb.DuckDBPyConnection
    shapes: dict[tuple, Shape] = field(default_factory=dict)


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
        return versions.company_dir(self.data_dir, slug)

    def files_dir(self, slug: str) -> Path:
        return versions.files_dir(self.data_dir, slug)

    def run(self, slug: str, sql: str, params: dict, max_rows: int,
            on_start: Callable[[Callable[[], None]], None] | None = None,
            store: tuple[Path, int] | None = None) -> QueryResult:
        """Runs one SELECT with ``$name`` parameters bound; at most ``max_rows`` rows come back. ``store`` (a
        path, a row limit): the JSON's pass is limited to ``max_rows + 1`` rows, then the query runs again on
        the same cursor (the same database version) and up to that many rows are written to the path as
        Parquet, as DuckDB produces them."""
        cursor, shapes = self._cursor(slug)
        stop = _Interrupt(cursor)
        refused = False
        try:
            if on_start is not None:
                on_start(stop)
            key = (sql, *sorted((name, type(value)) for name, value in params.items()))
            shape = shapes.get(key)
            if shape is None:
                shape = shapes[key] = shape_of(cursor, sql, params)
                if len(shapes) > _SHAPES_PER_DATABASE:
                    shapes.pop(next(iter(shapes)))
            # DuckDB refuses values for parameters the statement does not use.
            bind = {name: params[name] for name in shape.parameters if name in params}
            if stop.requested:  # DuckDB clears an interrupt when a query starts: an early one would be lost
                raise QueryInterrupted()
            json_rows = None if shape.small else shape.json_rows
            statement = json_rows if json_rows is not None else shape.python_rows
            if store is not None:  # the JSON wants the first rows only; every row goes to the Parquet below
                statement = first_rows(cursor, statement, max_rows + 1)
            cursor.execute(statement, bind)
            serialise = serialise_json_rows if json_rows is not None else serialise_rows
            result = serialise(cursor, shape.names, shape.duck_types, max_rows, self.max_result_bytes)
            shape.small = result.row_count <= SMALL_RESULT_ROWS
            if store is not None:
                if stop.requested:
                    raise QueryInterrupted()
                cursor.abort()  # the rows past max_rows the JSON did not fetch
                stored = write_parquet(cursor.sql(shape.stored_rows, params=bind),
                                       shape.names, shape.duck_types, store[1], store[0])
                result.stored_row_count, result.stored_truncated = stored.row_count, stored.truncated
        except ResultTooLarge:
            refused = True
            raise
        except duckdb.Error as e:
            if stop.requested or isinstance(e, duckdb.InterruptException):
                raise QueryInterrupted() from None
            raise QueryFailed(caller_message(str(e), self.data_dir)) from None
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

    def _cursor(self, slug: str) -> tuple[duckdb.DuckDBPyConnection, dict[tuple, Shape]]:
        """A fresh cursor (its own DuckDB connection: own transaction, own interrupt) on the company's
        cached database, reopened when CURRENT changed, and the shapes of the queries run on that version.
        Cursors share the instance's locked configuration."""
        stamp = versions.stamp(self.data_dir / slug / "CURRENT") if valid_slug(slug) else None
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
            name = versions.read_current(cdir)
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
        # The statements live in the core: validation at save (dataapi.data_api.validate) opens the same file,
        # and DuckDB hands both the same instance within a process.
        harden(con, cdir, files, self.memory_limit, self.threads)


class _Interrupt:
    """The interrupt function handed to ``on_start``; thread-safe, idempotent, harmless after the query.

    DuckDB forgets an interrupt when a query starts, so one that arrives early is remembered and checked
    just before the query runs. One landing in the instant between that check and DuckDB starting the
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


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_freed_memory() -> None:
    """Rows are fetched on executor threads, whose glibc arenas keep freed memory for themselves: after a
    refused result, each thread would keep up to a result's worth. ``malloc_trim`` returns those pages."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
