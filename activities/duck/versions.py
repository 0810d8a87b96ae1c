"""A company's database files and the versioned loading that writes them.

Layout under the data directory::

    <company>/CURRENT            names the active database file (replaced atomically)
    <company>/db-000042.duckdb   database versions; only the current one is kept
    <company>/loads.jsonl        the history of the loads, newest last (``load_history``)
    <company>/files/             Parquet/CSV/JSON the company's SQL may read (by absolute path)
    <company>/tmp/               DuckDB spill files

DuckDB lets one process write a file or many read it, never both, so the long-running worker (reading) and
``dataapi data load`` (writing) never share a file: a load copies the current version to the next one, writes
there and then switches CURRENT. Readers notice the switch with one stat() per query (``stamp``) and reopen; a
query still running on the old version keeps its open file (Linux keeps an unlinked file alive while it is open).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from activities.duck import load_history
from activities.duck.errors import LoadFailed
from activities.duck.load_history import LoadRecord
from dataapi.data_api.params import NAME_RE
from dataapi.identity.service import valid_slug

log = logging.getLogger("dataapi.activities.duck.versions")

VERSION_RE = re.compile(r"db-(\d{6,})\.duckdb")
_OLD_FILE_RE = re.compile(r"db-\d{6,}\.duckdb(?:\.wal)?")


def one_row(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The row of a statement that always returns one (an aggregate, a setting, INSERT's count)."""
    row = con.fetchone()
    if row is None:
        raise LoadFailed("the statement returned no row")
    return row


def company_dir(data_dir: Path, slug: str) -> Path:
    if not valid_slug(slug):  # the slug becomes a path: never let "../x" through
        raise ValueError(f"invalid company slug {slug!r}")
    path = data_dir / slug
    path.mkdir(parents=True, exist_ok=True)
    return path


def files_dir(data_dir: Path, slug: str) -> Path:
    path = company_dir(data_dir, slug) / "files"
    path.mkdir(exist_ok=True)
    return path


def load_file(data_dir: Path, slug: str, table: str, path: Path, replace: bool = True) -> int:
    """Loads a file (``load``) and returns the rows it wrote (rows added when appending)."""
    return load(data_dir, slug, table, path, replace=replace).rows


def load(data_dir: Path, slug: str, table: str, path: Path, replace: bool = True, *, name: str | None = None,
         by: str | None = None, via: str | None = None) -> LoadRecord:
    """Loads a CSV, Parquet or JSON file into ``table`` of a new database version of the company, switches CURRENT
    to it and records the load in the company's history (``load_history``), which it returns. ``name`` is the
    source's name for the history (default: the file's own name), ``by`` and ``via`` who loaded it and how.
    Loads of one company are serialised by a lock file."""
    if not NAME_RE.fullmatch(table):
        raise LoadFailed(f"table name {table!r} must match {NAME_RE.pattern}")
    path = Path(path)
    if not path.is_file():
        raise LoadFailed(f"{path} is not a file")
    reader = _reader(path)
    cdir = company_dir(Path(data_dir).resolve(), slug)
    with _exclusive(cdir / "load.lock"):
        started = time.monotonic()
        current = read_current(cdir)
        target = cdir / f"db-{_next_version(cdir):06d}.duckdb"
        if current is not None:
            shutil.copyfile(cdir / current, target)  # safe: readers never write to it
        try:
            mode, count, total = _load(target, table, reader, path, replace)
        except duckdb.Error as e:
            target.unlink(missing_ok=True)
            raise LoadFailed(str(e)) from None
        _write_current(cdir, target.name)
        record = LoadRecord(
            version=target.name, table=table, mode=mode, rows=count, table_rows=total, file=name or path.name,
            bytes=path.stat().st_size, db_bytes=target.stat().st_size,
            at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), ms=round((time.monotonic() - started) * 1000),
            by=by, via=via)
        try:
            load_history.append(cdir, record)
        except OSError as e:  # the load has taken effect: an unwritable history must not report it as failed
            log.warning("load of %s.%s not recorded in the history: %s", slug, table, e)
        for old in cdir.iterdir():
            if _OLD_FILE_RE.fullmatch(old.name) and not old.name.startswith(target.name):
                old.unlink(missing_ok=True)
    return record


def _load(target: Path, table: str, reader: str, path: Path, replace: bool) -> tuple[str, int, int]:
    """The load's mode (create, replace or append), the rows it wrote and the rows of the table after it."""
    ident = f'"{table}"'  # NAME_RE already excludes quotes; quoting also covers reserved words
    con = duckdb.connect(str(target))
    try:
        exists = one_row(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?", [table]))[0]
        source = f"SELECT * FROM {reader}($path)"  # noqa: S608 - reader is one of three names, path is bound
        if replace or not exists:
            mode = "replace" if exists else "create"
            con.execute(f"CREATE OR REPLACE TABLE {ident} AS {source}", {"path": str(path)})
            count = total = one_row(con.execute(f"SELECT count(*) FROM {ident}"))[0]  # noqa: S608 - NAME_RE
        else:
            mode = "append"
            count = one_row(con.execute(f"INSERT INTO {ident} BY NAME {source}", {"path": str(path)}))[0]
            total = one_row(con.execute(f"SELECT count(*) FROM {ident}"))[0]  # noqa: S608 - NAME_RE
        con.execute("CHECKPOINT")  # everything in the file itself: the next copy must not need a WAL
        return mode, count, total
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


def read_current(cdir: Path) -> str | None:
    """The file name CURRENT points at; None before the first load."""
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


def stamp(path: Path) -> tuple | None:
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
