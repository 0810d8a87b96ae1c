"""What one SQL text needs on a database version, worked out on its first run there and reused by every cursor:
its result's names and types, the statements to run (parsed once), and whether DuckDB can write its rows as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from activities.duck.errors import QueryFailed, SqlRefused
from dataapi.data_api import sqlguard
from dataapi.json_values import unique_names

SMALL_RESULT_ROWS = 64  # up to this many rows the Python path is cheaper than planning DuckDB's JSON wrapping


@dataclass
class Shape:
    names: list[str]
    duck_types: list[str]
    parameters: set[str]  # the named parameters the statement uses
    json_rows: duckdb.Statement | None  # each row as JSON written by DuckDB, when the column types allow
    python_rows: duckdb.Statement  # rows for the Python path (decimals as DOUBLE)
    stored_rows: duckdb.Statement  # rows for Parquet (``stored_rows_sql``, else the statement itself)
    small: bool = False  # its last result was small: the Python path costs less (no JSON wrapping to plan)


def shape_of(cursor: duckdb.DuckDBPyConnection, sql: str, params: dict) -> Shape:
    statement = single_select(cursor, sql)
    try:
        sqlguard.check(sql)  # at execution too: SQL saved before a function was refused still cannot call it
    except sqlguard.SqlNotAllowed as e:
        raise SqlRefused(e.message) from None
    parameters = set(statement.named_parameters)
    relation = cursor.sql(statement, params={n: v for n, v in params.items() if n in parameters})  # bound, not run
    names, duck_types = unique_names(relation.columns), [str(t) for t in relation.types]
    as_json = json_rows_sql(sql, names, duck_types)  # DuckDB writes each row's JSON: no Python objects per value
    python_rows = statement
    if any(t.startswith("DECIMAL") for t in duck_types):
        # DuckDB builds a Python Decimal per value, far slower than a float; as DOUBLE the JSON number is the
        # same. Projections keep the query's row order.
        casts = ", ".join(f"#{i}::DOUBLE" if t.startswith("DECIMAL") else f"#{i}" for i, t in enumerate(duck_types, 1))
        python_rows = single_select(cursor, f"SELECT {casts} FROM (\n{strip_tail(sql)}\n)")  # noqa: S608
    stored = stored_rows_sql(sql, duck_types)
    return Shape(names, duck_types, parameters, single_select(cursor, as_json) if as_json else None, python_rows,
                 single_select(cursor, stored) if stored else statement)


# Column types Parquet cannot hold (or that Arrow gives without their meaning): stored as their text.
_AS_TEXT = ("INTERVAL", "TIME WITH TIME ZONE", "UNION", "BIGNUM", "VARINT", "BIT")


def stored_rows_sql(sql: str, duck_types: list[str]) -> str | None:
    """A statement giving the rows of ``sql`` with the columns Parquet cannot hold as text, or None when none
    needs it. Projections keep the query's row order (the writer names the columns as the result does)."""
    if not any(t.startswith(_AS_TEXT) for t in duck_types):
        return None
    casts = ", ".join(f"#{i}::VARCHAR" if t.startswith(_AS_TEXT) else f"#{i}" for i, t in enumerate(duck_types, 1))
    return f"SELECT {casts} FROM (\n{strip_tail(sql)}\n)"  # noqa: S608


def first_rows(cursor: duckdb.DuckDBPyConnection, statement: duckdb.Statement, rows: int) -> duckdb.Statement:
    """``statement`` limited to its first ``rows`` rows, in its order: DuckDB then stops early, and a sort becomes
    a top-N that holds ``rows`` rows instead of every row."""
    return single_select(cursor, f"SELECT * FROM (\n{strip_tail(statement.query)}\n) LIMIT {int(rows)}")  # noqa: S608


def single_select(cursor: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    statements = cursor.extract_statements(sql)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise QueryFailed("An endpoint's SQL must be a single SELECT statement")
    return statements[0]


def strip_tail(sql: str) -> str:
    """The SQL without trailing semicolons and comments, so that it can be wrapped in a subquery. (The tokens'
    positions are byte offsets into the UTF-8 text, not character indexes.)"""
    text = sql.encode()
    end = len(text)
    for position, kind in reversed(duckdb.tokenize(sql)):
        if kind != duckdb.token_type.comment and text[position:position + 1] != b";":
            break
        end = position
    return text[:end].decode()


# Column types whose values DuckDB's to_json writes as the Python path (``serialise.serialise_rows``, orjson)
# would: the same JSON values. Doubles and decimals need NaN and infinities as null (orjson's), dates their
# infinities as Python's dates.
_JSON_NATIVE = {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "VARCHAR", "UUID", "DOUBLE", "DATE"}
_ROW = "__dataapi_row"


def json_rows_sql(sql: str, names: list[str], duck_types: list[str]) -> str | None:
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
    return (f"SELECT to_json({_ROW})::VARCHAR FROM (SELECT {', '.join(columns)} FROM (\n{strip_tail(sql)}\n))"  # noqa: S608
            f" AS {_ROW}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
