"""Comparison 8's rows: the export beside DuckDB's COPY, and its RSS at two sizes."""

from __future__ import annotations

from bench import report


def _side(total: float, peak: float) -> dict:
    return {"ours": {"stored_s": total - 0.1, "download_s": 0.1, "total_s": total, "mb": 9.0, "api_peak_mb": peak,
                     "worker_peak_mb": peak + 50, "api_growth_mb": 1.0, "worker_growth_mb": 2.0},
            "copy": {"total_s": total / 2, "peak_mb": 180.0, "mb": 10.0}}


def test_export_rows_compare_with_copy_and_the_small_size():
    summary = {"rows": [100, 1000], "parquet_100": _side(0.2, 200.0), "parquet_1000": _side(0.6, 210.0),
               "csv_100": _side(0.3, 230.0), "csv_1000": _side(1.0, 240.0)}
    rows = [r for r in report.build_rows({"scenarios": {"export": summary}}) if r.scenario.startswith("8")]
    assert {r.scenario for r in rows} == {"8 export parquet", "8 export csv"} and len(rows) == 12
    first = rows[0]
    assert (first.ours, first.baseline, first.ratio) == (0.6, 0.3, 2.0)
    worker = next(r for r in rows if r.metric.startswith("worker peak") and r.scenario.endswith("csv"))
    assert (worker.ours, worker.baseline) == (290.0, 280.0)  # 1,000 rows beside 100


def test_no_export_rows_without_the_comparison():
    assert not [r for r in report.build_rows({"scenarios": {}}) if r.scenario.startswith("8")]
