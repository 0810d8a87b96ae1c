"""A Data API result in the format and encoding a caller asks for, read from its stored form.

Every async job (and a sync execution asked for a format other than JSON) stores its rows as Parquet
(``activities.duck.stored``) beside the seed's JSON document; the file's metadata carries the result's
``columns``. This module negotiates the format (``Accept`` or ``?format=``) and the content coding
(``Accept-Encoding``), and turns a range of the stored rows (``offset``, ``limit``) into chunks of the answer,
one Parquet batch at a time: memory per call is a batch, whatever the size of the result.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import zstandard

from dataapi.errors import DomainError
from dataapi.json_values import iso_duration

COLUMNS_KEY = b"dataapi.columns"  # Parquet metadata: the result's columns as JSON [{"name", "type"}]
READ_BATCH_ROWS = 8192
_INT64 = range(-(2**63), 2**63)
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit takes "²"), and no giant numbers


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    NDJSON = "ndjson"
    PARQUET = "parquet"
    ARROW = "arrow"


MEDIA_TYPES = {
    Format.JSON: "application/json", Format.CSV: "text/csv", Format.NDJSON: "application/x-ndjson",
    Format.PARQUET: "application/vnd.apache.parquet", Format.ARROW: "application/vnd.apache.arrow.stream",
}
_BY_MEDIA_TYPE = {v: k for k, v in MEDIA_TYPES.items()}
COMPRESSIBLE = frozenset({Format.JSON, Format.CSV, Format.NDJSON})  # Parquet is compressed, Arrow is binary
ENCODINGS = ("zstd", "gzip")  # preferred first when the caller weighs them the same


class NotAcceptable(DomainError):
    status, code = 406, "NOT_ACCEPTABLE"

    def __init__(self, asked: str) -> None:
        super().__init__(f"Cannot produce {asked!r}; available: {', '.join(MEDIA_TYPES.values())} "
                         f"(or ?format={'|'.join(Format)})")


def _weighted(header: str) -> list[tuple[str, float]]:
    """The items of an Accept or Accept-Encoding header with their q-values, lowercase, in header order."""
    items = []
    for part in header.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name:
            items.append((name.lower(), q))
    return items


def negotiate_format(accept: str | None, format_param: str | None) -> Format:
    """``?format=`` wins over ``Accept``; no header, or ``*/*``, is JSON (the seed's answer)."""
    if format_param is not None:
        try:
            return Format(format_param.lower())
        except ValueError:
            raise NotAcceptable(f"format={format_param}") from None
    if not accept or not accept.strip():
        return Format.JSON
    best: tuple[float, int, Format] | None = None
    for media, q in _weighted(accept):
        if q <= 0:
            continue
        if media in _BY_MEDIA_TYPE:
            candidates = [_BY_MEDIA_TYPE[media]]
        elif media in ("*/*", "application/*"):
            candidates = [Format.JSON]
        elif media == "text/*":
            candidates = [Format.CSV]
        else:
            continue
        for fmt in candidates:
            specific = 0 if "*" in media else 1  # an exact type beats a wildcard of the same weight
            if best is None or (q, specific) > best[:2]:
                best = (q, specific, fmt)
    if best is None:
        raise NotAcceptable(accept)
    return best[2]


def negotiate_encoding(accept_encoding: str | None, fmt: Format) -> str | None:
    """The content coding for ``fmt`` (zstd or gzip), or None for none."""
    if fmt not in COMPRESSIBLE or not accept_encoding:
        return None
    weights = dict(_weighted(accept_encoding))
    star = weights.get("*", 0.0)
    ranked = [(weights.get(e, star), -i, e) for i, e in enumerate(ENCODINGS)]
    q, _, encoding = max(ranked)
    return encoding if q > 0 else None


class Compressor:
    """A streaming content coder: ``compress`` each chunk, ``flush`` at the end."""

    def __init__(self, encoding: str):
        if encoding == "gzip":
            self._obj: Any = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif encoding == "zstd":
            self._obj = zstandard.ZstdCompressor(level=3).compressobj()
        else:
            raise ValueError(f"unknown content coding {encoding!r}")

    def compress(self, chunk: bytes) -> bytes:
        return bytes(self._obj.compress(chunk))

    def flush(self) -> bytes:
        return bytes(self._obj.flush())


def compressed(chunks: Iterable[bytes], encoding: str | None) -> Iterator[bytes]:
    if encoding is None:
        yield from chunks
        return
    coder = Compressor(encoding)
    for chunk in chunks:
        if out := coder.compress(chunk):
            yield out
    yield coder.flush()


@dataclass(frozen=True)
class Page:
    """A range of a stored result: ``offset`` and ``limit`` (None: to the end) as asked, and the total."""

    offset: int
    limit: int | None
    total_row_count: int

    @property
    def end(self) -> int:
        return self.total_row_count if self.limit is None else min(self.total_row_count, self.offset + self.limit)


PAGE_MAX = 10**18 - 1  # the largest offset and limit (18 digits, _DIGITS; OpenAPI: maximum)


def parse_page(offset: str | None, limit: str | None) -> tuple[int, int | None]:
    """``?offset=&limit=`` as integers (offset ≥ 0, limit ≥ 1, both at most ``PAGE_MAX``); bad values are the
    contract's 400."""
    def number(name: str, raw: str | None, low: int) -> int | None:
        if raw is None:
            return None
        if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= PAGE_MAX:
            raise DomainError(f"'{name}' must be an integer from {low} to {PAGE_MAX}", code="INVALID_PARAMS")
        return int(raw)

    return number("offset", offset, 0) or 0, number("limit", limit, 1)


class StoredResult:
    """The Parquet of a result, at a local path."""

    def __init__(self, path: Path):
        self.file = pq.ParquetFile(path)
        metadata = self.file.schema_arrow.metadata or {}
        self.columns: list[dict[str, str]] = orjson.loads(metadata.get(COLUMNS_KEY, b"[]"))
        self.row_count = self.file.metadata.num_rows

    def page(self, offset: int, limit: int | None) -> Page:
        return Page(offset, limit, self.row_count)

    def batches(self, page: Page) -> Iterator[pa.RecordBatch]:
        """The rows of ``page``, batch by batch; row groups before the offset are not read."""
        start, skip = 0, 0
        groups: list[int] = []
        for i in range(self.file.num_row_groups):
            rows = self.file.metadata.row_group(i).num_rows
            if start + rows > page.offset and start < page.end:
                if not groups:
                    skip = page.offset - start
                groups.append(i)
            start += rows
        left = page.end - page.offset
        if not groups or left <= 0:
            return
        for batch in self.file.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=groups):
            if skip:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
            if batch.num_rows > left:
                batch = batch.slice(0, left)
            left -= batch.num_rows
            yield batch
            if left <= 0:
                return

    def encode(self, fmt: Format, page: Page, json_tail: Callable[[int], bytes] | None = None) -> Iterator[bytes]:
        """The rows of ``page`` in ``fmt``; ``json_tail(row_count)`` ends the JSON object (after ``row_count``)."""
        if fmt == Format.JSON:
            return self._json(page, json_tail or (lambda n: b"}"))
        if fmt == Format.NDJSON:
            return (b"".join(r + b"\n" for r in self._json_rows(b)) for b in self.batches(page))
        if fmt == Format.CSV:
            return self._csv(page)
        if fmt == Format.ARROW:
            return _written(lambda sink: pa.ipc.new_stream(sink, self.file.schema_arrow), self.batches(page))
        return _written(lambda sink: pq.ParquetWriter(sink, self.file.schema_arrow, compression="zstd"),
                        self.batches(page))

    def _json(self, page: Page, tail: Callable[[int], bytes]) -> Iterator[bytes]:
        yield b'{"columns":' + orjson.dumps(self.columns) + b',"rows":['
        count = 0
        for batch in self.batches(page):
            rows = self._json_rows(batch)
            yield (b"," if count else b"") + b",".join(rows)
            count += len(rows)
        yield b'],"row_count":' + str(count).encode() + tail(count)

    def _json_rows(self, batch: pa.RecordBatch) -> list[bytes]:
        """Each row as the JSON object of the seed's answer: the values as the query path writes them."""
        names = batch.schema.names
        columns = [_json_values(batch.column(i), self._type(i)) for i in range(batch.num_columns)]
        return [orjson.dumps(dict(zip(names, row, strict=True)), default=_default, option=orjson.OPT_NON_STR_KEYS)
                for row in zip(*columns, strict=True)]

    def _type(self, i: int) -> str:
        return self.columns[i]["type"] if i < len(self.columns) else ""

    def _csv(self, page: Page) -> Iterator[bytes]:
        sink = _Sink()
        writer: pa_csv.CSVWriter | None = None
        for batch in self.batches(page):
            batch = _csv_ready(batch, [self._type(i) for i in range(batch.num_columns)])
            if writer is None:
                writer = pa_csv.CSVWriter(pa.PythonFile(sink, mode="w"), batch.schema)
            writer.write_batch(batch)
            yield sink.take()
        if writer is None:  # no rows: the header alone
            yield (",".join(_csv_name(n) for n in self.file.schema_arrow.names) + "\n").encode()
            return
        writer.close()
        yield sink.take()


def _csv_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _csv_ready(batch: pa.RecordBatch, types: list[str]) -> pa.RecordBatch:
    """Columns CSV has no text for (nested values, bytes, intervals) become their JSON text, as in the JSON."""
    arrays = []
    for array, seed_type in zip(batch.columns, types, strict=True):
        t = array.type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or seed_type == "blob":
            array = pa.array([_csv_text(v) for v in _json_values(array, seed_type)], pa.string())
        elif pa.types.is_dictionary(t):
            array = array.cast(t.value_type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _csv_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return orjson.dumps(v, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_values(array: pa.Array, seed_type: str) -> list[Any]:
    """A column's values as the JSON of the seed's answer writes them (before orjson's own conversions)."""
    values = array.to_pylist(maps_as_pydicts="lossy")
    if seed_type == "json" and pa.types.is_string(array.type):
        return [None if v is None else orjson.Fragment(v) for v in values]
    if seed_type == "bigint" and pa.types.is_decimal(array.type):  # HUGEINT and the like, stored as DECIMAL(38,0)
        return [None if v is None else _big_int(int(v)) for v in values]
    if pa.types.is_uint64(array.type):
        return [None if v is None else _big_int(v) for v in values]
    return values


def _big_int(v: int) -> int | str:
    """Integers beyond signed 64-bit travel as strings, as in the seed's answer."""
    return v if v in _INT64 else str(v)


def _default(v: object) -> object:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, timedelta):
        return iso_duration(v)
    if isinstance(v, time):
        return v.isoformat()
    raise TypeError


class _Sink:
    """A write-only file for pyarrow's writers that hands out what was written so far (``take``), while its
    position keeps counting, as the writers' offsets need."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _written(open_writer: Callable[[Any], Any], batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """Batches through a pyarrow writer (Arrow IPC stream, Parquet), its output handed out as it grows."""
    sink = _Sink()
    writer = open_writer(pa.PythonFile(sink, mode="w"))
    for batch in batches:
        writer.write_batch(batch)
        if chunk := sink.take():
            yield chunk
    writer.close()
    yield sink.take()
