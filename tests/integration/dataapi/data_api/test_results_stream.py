"""Stored results are written and read a batch at a time: a large result becomes many bounded Parquet row groups
as DuckDB produces it, every format reads it back in many bounded chunks, and a process answering a 20x larger
result does not grow with it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import pytest

from activities.duck.stored import BATCH_ROWS, write_parquet
from dataapi.data_api.results import READ_BATCH_ROWS, Format, StoredResult

WIDE_SQL = "SELECT i AS n, repeat('x', 200) || i AS text, i * 0.5 AS half FROM range({rows}) t(i) ORDER BY i"


def _stored(tmp_path, rows: int):
    con = duckdb.connect()
    relation = con.sql(WIDE_SQL.format(rows=rows))
    names, types = relation.columns, [str(t) for t in relation.types]
    path = tmp_path / "rows.parquet"
    written = write_parquet(relation, names, types, rows, path)
    return path, written


def test_rows_are_written_in_bounded_row_groups(tmp_path):
    path, written = _stored(tmp_path, 200_000)
    assert written.row_count == 200_000 and not written.truncated
    stored = StoredResult(path)
    groups = [stored.file.metadata.row_group(i).num_rows for i in range(stored.file.num_row_groups)]
    assert len(groups) > 5 and max(groups) <= BATCH_ROWS and sum(groups) == 200_000


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_streams_in_bounded_chunks(tmp_path, fmt):
    path, _ = _stored(tmp_path, 200_000)
    stored = StoredResult(path)
    sizes = [len(c) for c in stored.encode(fmt, stored.page(0, None))]
    # ~45 MB of text in all; no chunk holds more than a read batch's rows
    bound = READ_BATCH_ROWS * 400 if fmt != Format.PARQUET else 8 << 20
    assert len(sizes) >= 200_000 // READ_BATCH_ROWS and max(sizes) < bound, (len(sizes), max(sizes))
    if fmt in (Format.JSON, Format.CSV, Format.NDJSON):
        assert sum(sizes) > 40e6


_PEAK = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from dataapi.data_api.results import Format, StoredResult, compressed
    stored = StoredResult(Path(sys.argv[1]))
    total = 0
    for chunk in compressed(stored.encode(Format(sys.argv[2]), stored.page(0, None)), "gzip"):
        total += len(chunk)
    print(json.dumps({"bytes": total, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def _peak(path, fmt: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PEAK, str(path), fmt], capture_output=True, text=True, check=True,
                          timeout=300)
    return json.loads(done.stdout)


@pytest.mark.slow
def test_answering_a_20x_larger_result_takes_no_more_memory(tmp_path):
    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    small, _ = _stored(tmp_path / "small", 20_000)
    big, _ = _stored(tmp_path / "big", 400_000)
    for fmt in ("json", "csv"):
        a, b = _peak(small, fmt), _peak(big, fmt)
        assert b["bytes"] > 10 * a["bytes"]
        # ~90 MB of JSON or CSV answered: the peak stays within a few batches of the small one's
        assert b["peak_mb"] - a["peak_mb"] < 40, (fmt, a, b)


_WRITE_PEAK = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import duckdb
    from activities.duck.stored import write_parquet
    con = duckdb.connect()
    con.execute("SET threads = 2")
    relation = con.sql(sys.argv[1])
    written = write_parquet(relation, relation.columns, [str(t) for t in relation.types], 10**9, Path(sys.argv[2]))
    print(json.dumps({"rows": written.row_count,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


@pytest.mark.slow
def test_writing_a_20x_larger_result_takes_no_more_memory(tmp_path):
    peaks = []
    for rows in (50_000, 1_000_000):
        sql = WIDE_SQL.replace(" ORDER BY i", "").format(rows=rows)  # a sort would hold every row in DuckDB
        done = subprocess.run([sys.executable, "-c", _WRITE_PEAK, sql, str(tmp_path / f"{rows}.parquet")],
                              capture_output=True, text=True, check=True, timeout=300)
        out = json.loads(done.stdout)
        assert out["rows"] == rows
        peaks.append(out["peak_mb"])
    assert peaks[1] - peaks[0] < 40, peaks  # ~220 MB of rows written
