"""The benchmark's data: a deterministic sales table as Parquet (loaded into the company with `dataapi data
load`), the same rows in a DuckDB file (the bare handler's) and in SQLite (Datasette's), and CSV files of a
given size (the Jobs API upload)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb

REGIONS = ["Norte", "Nordeste", "Centro-Oeste", "Sudeste", "Sul"]
PRODUCTS = ["Notebook", "Monitor", "Teclado", "Mouse", "Cadeira", "Mesa", "Headset", "Webcam"]
DAYS = 546  # 2025-01-01 .. 2026-06-30


def _list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _mix(salt: int) -> str:
    """A deterministic scramble of the row number (integer arithmetic only: the same on every DuckDB)."""
    return f"((i * 2654435761 + {salt} * 40503) % 4294967291)"


def _sales_select(rows: int) -> str:
    return f"""
        SELECT i AS id,
               DATE '2025-01-01' + CAST({_mix(1)} % {DAYS} AS INTEGER) AS data,
               ({_list(REGIONS)})[1 + {_mix(2)} // 7 % {len(REGIONS)}] AS regiao,
               ({_list(PRODUCTS)})[1 + {_mix(3)} // 11 % {len(PRODUCTS)}] AS produto,
               CAST(({_mix(4)} // 13 % 299950 + 50) / 100 AS DECIMAL(12, 2)) AS valor
        FROM range(1, {int(rows) + 1}) t(i)"""  # noqa: S608 - numbers and our own constants


def _duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


def write_sales(path: Path, rows: int) -> Path:
    """``rows`` sales as Parquet: id, data (date), regiao, produto, valor (decimal(12,2))."""
    con = _duck()
    try:
        con.execute(f"COPY ({_sales_select(rows)}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


def write_duckdb(parquet: Path, path: Path) -> Path:
    """The same rows in a DuckDB file of their own, loaded as `dataapi data load` loads them."""
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE TABLE vendas AS SELECT * FROM read_parquet(?)", [str(parquet)])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return path


def write_sqlite(parquet: Path, path: Path) -> Path:
    """The same rows in SQLite: id as the rowid, dates as ISO text, valor as REAL (SQLite has no decimal)."""
    db = sqlite3.connect(path)
    con = _duck()
    try:
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                         "CREATE TABLE vendas (id INTEGER PRIMARY KEY, data TEXT NOT NULL, regiao TEXT NOT NULL,"
                         " produto TEXT NOT NULL, valor REAL NOT NULL);")
        cursor = con.execute("SELECT id, strftime(data, '%Y-%m-%d'), regiao, produto, valor::DOUBLE "
                             "FROM read_parquet(?) ORDER BY id", [str(parquet)])
        while batch := cursor.fetchmany(100_000):
            db.executemany("INSERT INTO vendas VALUES (?, ?, ?, ?, ?)", batch)
        db.commit()
    finally:
        con.close()
        db.close()
    return path


def write_csv(path: Path, megabytes: int) -> Path:
    """A sales CSV of about ``megabytes`` MB (slightly more), written by DuckDB."""
    con = _duck()
    try:
        rows = megabytes * 1_000_000 // 40 + 1000  # ~45 bytes a row: a little over the size asked for
        con.execute(f"COPY ({_sales_select(rows)}) TO '{path}' (FORMAT csv, HEADER)")
    finally:
        con.close()
    return path
