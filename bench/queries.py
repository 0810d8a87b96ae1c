"""The benchmark's queries: the same SQL as our endpoints (DuckDB), the bare handler (DuckDB) and Datasette's
canned queries (SQLite), with the same parameter values for every side."""

from __future__ import annotations

import random

NAMESPACE = "bench"
COLUMNS = "id, data, regiao, produto, valor"
POINT_SQL = f"SELECT {COLUMNS} FROM vendas WHERE id = $id"  # noqa: S608 - a constant
MEDIUM_SQL = ("SELECT regiao, produto, COUNT(*) AS vendas, CAST(SUM(valor) AS DECIMAL(18, 2)) AS total\n"
              "FROM vendas WHERE data >= $data_inicio GROUP BY regiao, produto ORDER BY regiao, produto")
WIDE_ROWS = 10_000
WIDE_SQL = f"SELECT {COLUMNS} FROM vendas WHERE id > $desde ORDER BY id LIMIT {WIDE_ROWS}"  # noqa: S608

_ID = [{"name": "id", "type": "integer", "required": True}]
_DATE = [{"name": "data_inicio", "type": "date", "required": True}]
_FROM = [{"name": "desde", "type": "integer", "required": True}]

# Our endpoints (`dataapi endpoints apply` format, namespace "bench"); the bare handler serves the sync ones.
ENDPOINTS = [
    {"slug": "point", "execution_mode": "sync", "sql": POINT_SQL, "parameters": _ID},
    {"slug": "medium", "execution_mode": "sync", "sql": MEDIUM_SQL, "parameters": _DATE},
    {"slug": "wide", "execution_mode": "sync", "sql": WIDE_SQL, "parameters": _FROM, "max_rows": WIDE_ROWS},
    {"slug": "point-async", "execution_mode": "async", "sql": POINT_SQL, "parameters": _ID},
    {"slug": "point-callback", "execution_mode": "async", "sql": POINT_SQL, "parameters": _ID},
    # The same two sync queries with the result cache on (comparison 7 and the soak's "cached" kind).
    {"slug": "point-cached", "execution_mode": "sync", "sql": POINT_SQL, "parameters": _ID, "cache_seconds": 3600},
    {"slug": "medium-cached", "execution_mode": "sync", "sql": MEDIUM_SQL, "parameters": _DATE,
     "cache_seconds": 3600},
]
BARE = {e["slug"]: {"sql": e["sql"], "parameters": e["parameters"]}
        for e in ENDPOINTS if e["execution_mode"] == "sync" and not e.get("cache_seconds")}
CACHED_SUFFIX = "-cached"  # our cached endpoint of a query: point -> point-cached
# Distinct parameter values of the cached comparison: a dashboard's repeated questions, every one a hit once the
# cache holds it (the other sides get the same values and compute each answer).
CACHED_DISTINCT = 64

# Datasette canned queries: the same statements in SQLite's dialect (named parameters are :name).
DATASETTE = {
    "point": f"SELECT {COLUMNS} FROM vendas WHERE id = :id",  # noqa: S608 - a constant
    "medium": ("SELECT regiao, produto, COUNT(*) AS vendas, ROUND(SUM(valor), 2) AS total\n"
               "FROM vendas WHERE data >= :data_inicio GROUP BY regiao, produto ORDER BY regiao, produto"),
}
FIRST_DAY = "2025-01-01"  # every row is on or after it: the medium query aggregates the whole table


def parameter_values(query: str, rows: int, count: int, seed: int = 7) -> list[dict]:
    """``count`` deterministic parameter sets; every side is sent the same sequence."""
    rng = random.Random(f"{query}-{seed}")
    if query in ("point", "point-async", "point-callback", "point-cached"):
        return [{"id": rng.randint(1, rows)} for _ in range(count)]
    if query == "medium":
        return [{"data_inicio": FIRST_DAY} for _ in range(count)]
    if query == "wide":
        return [{"desde": rng.randint(0, rows - WIDE_ROWS)} for _ in range(count)]
    raise ValueError(f"unknown query {query!r}")
