"""JSON spellings and column names of query results, shared by the Data API's writer (``activities.duck``), the
Jobs API's SQL runner (``activities/sql_runner.py``, which runs isolated in the sandbox with this file mounted
beside it) and the columns that validation at save reports (``dataapi.data_api.validate``). Standard library
only, for the sandbox's sake."""

from __future__ import annotations

from datetime import timedelta


def iso_duration(td: timedelta) -> str:
    """An interval as an ISO 8601 duration in days and seconds: ``P1DT3600S``, ``-P0DT0.5S``."""
    micros = abs(td) // timedelta(microseconds=1)
    seconds, micros = divmod(micros, 1_000_000)
    days, seconds = divmod(seconds, 86_400)
    text = f"P{days}DT{seconds}" + (f".{micros:06d}".rstrip("0") if micros else "") + "S"
    return ("-" if td < timedelta(0) else "") + text


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique as JSON keys and table columns: ``a, a, A`` gives ``a, a_1, A_2``. Compared
    case-insensitively, as DuckDB compares identifiers."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 0
        while candidate.lower() in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out
