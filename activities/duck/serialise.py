"""A query's rows as the JSON the Data API returns: ``QueryResult``.

Two writers give the same JSON values: DuckDB's own (``serialise_json_rows``, over the statement
``shapes.json_rows_sql`` builds, for column types it writes exactly as we would) and orjson over Python rows
(``serialise_rows``, for everything else). Both fetch and encode batch by batch and count the bytes as they
go, so a result past the limit is refused (``ResultTooLarge``) before it is held whole.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import orjson

from activities.duck.errors import ResultTooLarge
from dataapi.data_api.column_types import column_type
from dataapi.json_values import iso_duration

DEFAULT_MAX_RESULT_BYTES = 32 << 20
FETCH_CHUNK = 2048  # rows turned into Python objects at a time: a big result never exists as objects at once
FIRST_FETCH = 4  # rows of the first batch: their size sets how many rows the next batches take
BATCH_BYTES = 4 << 20  # the JSON size a batch aims at, so wide rows come a few at a time
_INT64 = range(-(2**63), 2**63)


@dataclass
class QueryResult:
    columns: list[dict]  # [{"name": ..., "type": ...}], in order
    rows_json: bytes  # JSON array of objects, keys in column order
    row_count: int
    truncated: bool
    stored_row_count: int | None = None  # rows stored as Parquet as well (CompanyDatabases.run's ``store``)
    stored_truncated: bool = False  # the query had more rows than the stored limit


def serialise_rows(cursor: duckdb.DuckDBPyConnection, names: list[str], duck_types: list[str],
                   max_rows: int, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> QueryResult:
    """Fetches up to ``max_rows`` and serialises them chunk by chunk: the peak memory of a large result is
    one chunk of Python objects plus its JSON, not every row as objects."""
    converters = [(i, _CONVERTERS[t]) for i, t in enumerate(duck_types) if t in _CONVERTERS]
    option = orjson.OPT_NON_STR_KEYS if any("MAP(" in t for t in duck_types) else 0
    return _collect(cursor, max_rows, max_bytes, names, duck_types,
                    lambda rows: _rows_json(rows, names, converters, option)[1:-1])  # the objects, without [ ]


def serialise_json_rows(cursor: duckdb.DuckDBPyConnection, names: list[str], duck_types: list[str],
                        max_rows: int, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> QueryResult:
    """The rows of a ``shapes.json_rows_sql`` statement: one JSON object per row, written by DuckDB."""
    return _collect(cursor, max_rows, max_bytes, names, duck_types,
                    lambda rows: ",".join(r[0] for r in rows).encode())


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
                # The traceback keeps this frame: drop what it holds, so that the caller can give the pages back.
                parts.clear()
                del rows, part
                raise ResultTooLarge(max_bytes)
            parts.append(part)
            count += len(rows)
            batch = max(1, min(FETCH_CHUNK, BATCH_BYTES * len(rows) // max(len(part), 1)))
        if truncated or exhausted:
            break
    columns = [{"name": n, "type": column_type(t)} for n, t in zip(names, duck_types, strict=True)]
    return QueryResult(columns, b"[" + b",".join(parts) + b"]", count, truncated)


def _big_int(v: int | str) -> int | str:
    """Integers beyond signed 64-bit travel as strings: JSON parsers would mangle them as numbers."""
    return v if isinstance(v, int) and v in _INT64 else str(v)


# Values orjson cannot serialise as they come from DuckDB, converted per column before serialising.
_CONVERTERS: dict[str, Callable] = {
    "UBIGINT": _big_int, "HUGEINT": _big_int, "UHUGEINT": _big_int, "BIGNUM": _big_int, "VARINT": _big_int,
    "JSON": orjson.Fragment,  # already JSON text: embed it as is
    "TIME WITH TIME ZONE": time.isoformat,  # orjson refuses times with a zone
}


def _default(v: object) -> object:
    """orjson's fallback for the values it does not know, also inside lists and structs."""
    if isinstance(v, Decimal):
        return float(v)  # decimals are JSON numbers on the wire
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, timedelta):
        return iso_duration(v)
    raise TypeError


def _sanitise(v: object) -> object:
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


def _rows_json(rows: Sequence[Sequence[Any]], names: list[str], converters: list[tuple[int, Callable]],
               option: int) -> bytes:
    if converters:
        converted = [list(r) for r in rows]
        for i, convert in converters:
            for r in converted:
                if r[i] is not None:
                    r[i] = convert(r[i])
        rows = converted
    objects = [dict(zip(names, r, strict=True)) for r in rows]
    try:
        return orjson.dumps(objects, default=_default, option=option)
    except TypeError:
        return orjson.dumps(_sanitise(objects), default=_default)
