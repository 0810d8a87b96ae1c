"""The load history of a company: one JSON line per load, in ``<company>/loads.jsonl`` next to its versions.

Only the loader (``versions.load``) writes it, under the company's load lock and after CURRENT has switched, so
a listed load is one that took effect, whoever made it (``dataapi data load``, the console, the demo). A line is
appended with one ``write`` on a file opened with ``O_APPEND`` and synced; the file keeps the newest
``KEEP`` lines (older ones are dropped by writing the rest to a new file that replaces it atomically). Readers
skip a line they cannot decode or that lacks a field, so a torn last line after a crash hides one load, never the
history.

This module does not import DuckDB: whoever shows the history reads it without loading the database engine.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

FILE = "loads.jsonl"
KEEP = 1000  # lines kept; a company loading every minute keeps most of a day
MODES = ("create", "replace", "append")


@dataclass(frozen=True)
class LoadRecord:
    """One load: the version it made current, what it did to which table, from what, by whom and when."""

    version: str  # the database file CURRENT named after the load, e.g. db-000042.duckdb
    table: str
    mode: str  # one of MODES: create (the table was new), replace or append
    rows: int  # rows the load wrote (added, when appending)
    table_rows: int  # rows in the table after the load
    file: str  # the source file's name (never its path on the server)
    bytes: int  # the source file's size
    db_bytes: int  # the size of the new database version
    at: str  # UTC, ISO 8601, when the version became current
    ms: int  # how long the load took
    by: str | None = None  # the user who loaded it, when known
    via: str | None = None  # cli, console, demo, ...


def append(cdir: Path, record: LoadRecord, keep: int = KEEP) -> None:
    """Appends ``record`` to the company's history; the caller holds the company's load lock."""
    line = (json.dumps(asdict(record), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    fd = os.open(cdir / FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.fstat(fd).st_size
        if end and os.pread(fd, 1, end - 1) != b"\n":
            line = b"\n" + line  # after a torn line: this one starts a line of its own
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    _prune(cdir, keep)


def _prune(cdir: Path, keep: int) -> None:
    path = cdir / FILE
    lines = path.read_bytes().splitlines(keepends=True)
    if len(lines) <= keep:
        return
    tmp = cdir / f"{FILE}.tmp-{os.getpid()}"
    with tmp.open("wb") as f:
        f.writelines(lines[-keep:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # readers see the whole old file or the whole new one


def read(cdir: Path, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` loads of the company, newest first; [] before the first one."""
    try:
        lines = (cdir / FILE).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for line in reversed(lines):
        if len(out) >= limit:
            break
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if _valid(entry):
            out.append(entry)
    return out


def _valid(entry: object) -> bool:
    """A line the loader wrote: every field of ``LoadRecord`` there, the counts and sizes integers."""
    return (isinstance(entry, dict) and all(f.name in entry for f in fields(LoadRecord))
            and all(type(entry[k]) is int for k in ("rows", "table_rows", "bytes", "db_bytes", "ms")))
