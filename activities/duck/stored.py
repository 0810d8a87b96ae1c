"""Every row of a query as Parquet, written batch by batch as DuckDB produces them: the stored form that other
formats and pages are read from (``dataapi.data_api.results``). The file carries the result's columns (names and
the Data API's types) in its metadata, so that a reader gives the same ``columns`` as the JSON result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from dataapi.data_api.column_types import column_type
from dataapi.data_api.results import COLUMNS_KEY

BATCH_ROWS = 16_384  # rows DuckDB hands over at a time, and the rows of one Parquet row group at most
COMPRESSION = "zstd"


@dataclass(frozen=True)
class StoredRows:
    row_count: int  # rows written
    truncated: bool  # the query had more than the limit


def write_parquet(relation: duckdb.DuckDBPyRelation, names: list[str], duck_types: list[str], limit: int,
                  path: Path) -> StoredRows:
    """Writes up to ``limit`` rows of ``relation`` to ``path``; one more row is read to tell truncation. At most
    one batch of rows is held at a time."""
    reader = relation.to_arrow_reader(BATCH_ROWS)
    columns = [{"name": n, "type": column_type(t)} for n, t in zip(names, duck_types, strict=True)]
    schema = pa.schema([f.with_name(n) for f, n in zip(reader.schema, names, strict=True)],
                       metadata={COLUMNS_KEY: orjson.dumps(columns)})
    count, truncated = 0, False
    with pq.ParquetWriter(path, schema, compression=COMPRESSION) as writer:
        for batch in reader:
            if count + batch.num_rows > limit:
                truncated, batch = True, batch.slice(0, limit - count)
            if batch.num_rows:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
                count += batch.num_rows
            if truncated:
                break
    reader.close()
    return StoredRows(count, truncated)
