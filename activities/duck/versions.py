"""A company's database files and the versioned loading that writes them.

Layout under the data directory::

    <company>/CURRENT            names the active database file (replaced atomically)
    <company>/db-000042.duckdb   database versions; only the current one is kept
    <company>/files/             Parquet/CSV/JSON the company's SQL may read (by absolute path)
    <company>/tmp/               DuckDB spill files

DuckDB lets one process write a file or many read it, never both, so the long-running worker (reading) and
``dataapi data load`` (writing) never share a file: a load copies the current version to the next one, writes
there and then switches CURRENT. Readers notice the switch with one stat() per query (``stamp``) and reopen; a
query still running on the old version keeps its open file (Linux keeps an unlinked file alive while it is open).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from activities.duck.errors import LoadFailed
from dataapi.data_api.params import NAME_RE
from dataapi.identity.service import valid_slug

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
    """Loads a CSV, Parquet or JSON file into ``table`` of a new database version of the company; returns its
    row count (rows added when appending). Loads of one company are serialised by a lock file."""
    if not NAME_RE.fullmatch(table):
        raise LoadFailed(f"table name {table!r} must match {NAME_RE.pattern}")
    path = Path(path)
    if not path.is_file():
        raise LoadFailed(f"{path} is not a file")
    reader = _reader(path)
    cdir = company_dir(Path(data_dir).resolve(), slug)
    with _exclusive(cdir / "load.lock"):
        current = read_current(cdir)
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
        exists = one_row(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?", [table]))[0]
        source = f"SELECT * FROM {reader}($path)"  # noqa: S608 - reader is one of three names, path is bound
        if replace or not exists:
            con.execute(f"CREATE OR REPLACE TABLE {ident} AS {source}", {"path": str(path)})
            count = one_row(con.execute(f"SELECT count(*) FROM {ident}"))[0]  # noqa: S608 - NAME_RE
        else:
            count = one_row(con.execute(f"INSERT INTO {ident} BY NAME {source}", {"path": str(path)}))[0]
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
