"""Results are bounded in bytes, not only rows (RESULT_TOO_LARGE), and parameter patterns never stall the API:
real DuckDB, and the real `dataapi api` process (its query worker runs sync queries in the API process itself)."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from activities.duck.databases import CompanyDatabases
from activities.duck.errors import ResultTooLarge
from cli.dev import wait_for_temporal
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint
from dataapi.db import make_engine, session_scope
from dataapi.identity.service import get_company
from tests.support.processes import DATAAPI, api_ready, bearer, create_tenant, until

BIG_SQL = "SELECT repeat('x', 1000000) AS s FROM range(300)"  # 300 rows of 1 MB: a 300 MB document


@pytest.fixture
def dbs(tmp_path) -> CompanyDatabases:
    return CompanyDatabases(tmp_path / "data", memory_limit="256MB", max_result_bytes=4 << 20)


@pytest.mark.parametrize("sql", [
    "SELECT repeat('x', 100000) AS s FROM range(300)",  # DuckDB writes the JSON
    "SELECT [repeat('x', 100000)] AS s FROM range(300)",  # a list: the Python path
    "SELECT repeat('x', 10) AS s FROM range(1000000)",  # many small rows
])
def test_a_result_past_the_cap_is_refused(dbs, sql):
    for _ in range(2):  # the first run of a shape and a cached one
        with pytest.raises(ResultTooLarge, match=r"larger than 4 MiB.*narrow the query") as e:
            dbs.run("acme", sql, {}, 1_000_000)
        assert e.value.message.count("/") == 0


def test_serialising_stops_at_the_cap(dbs):
    """Python never holds more than the cap and one batch: not the 300 MB of every row fetched."""
    tracemalloc.start()
    try:
        with pytest.raises(ResultTooLarge):
            dbs.run("acme", BIG_SQL, {}, 100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (4 << 20) + (24 << 20), peak


def test_results_under_the_cap_are_whole(dbs):
    result = dbs.run("acme", "SELECT range AS n, repeat('x', 1000) AS s FROM range(3000)", {}, 100_000)
    rows = json.loads(result.rows_json)
    assert result.row_count == len(rows) == 3000 and not result.truncated
    assert rows[0] == {"n": 0, "s": "x" * 1000} and rows[-1]["n"] == 2999
    # Truncated by max_rows: what is cut is neither fetched past one row nor counted.
    result = dbs.run("acme", "SELECT repeat('x', 1000) AS s FROM range(1000000)", {}, 100)
    assert result.row_count == 100 and result.truncated and len(result.rows_json) < 200_000
    # Wide rows come a few per batch and still all arrive, in order.
    result = dbs.run("acme", "SELECT range AS n, repeat('y', 300000) AS s FROM range(12)", {}, 100)
    assert [r["n"] for r in json.loads(result.rows_json)] == list(range(12))


# --- the real API process --------------------------------------------------------------------------------

def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _big_mappings(pid: int) -> list[str]:
    """The mappings holding more than 20 MB, for the message of a failure."""
    found, header = [], ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef" and "-" in line.split(" ")[0]:
            header = line
        elif line.startswith("Rss:") and int(line.split()[1]) > 20_000:
            found.append(f"{int(line.split()[1]) // 1024} MB {header}")
    return found


class _Sampler(threading.Thread):
    """The process's RSS every 10 ms: its high-water mark during a stretch of calls."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            time.sleep(0.01)


@pytest.mark.slow
async def test_real_api_refuses_a_300_mb_result_and_patterns_never_stall(topology, sqlite_url, pki, tmp_path):
    topo = topology
    settings = topo.configure(sqlite_url, pki)
    topo.start_temporal(settings)
    tenant = create_tenant(settings, topo.root)
    engine = make_engine(sqlite_url)
    try:
        with session_scope(engine) as s:
            company = get_company(s, tenant.slug)
            for d in [{"slug": "enorme", "sql": BIG_SQL, "max_rows": 100_000},
                      {"slug": "enorme-async", "sql": BIG_SQL, "max_rows": 100_000, "execution_mode": "async"},
                      {"slug": "padrao", "sql": "SELECT $s AS s",
                       "parameters": [{"name": "s", "type": "string", "pattern": "(a+)+$"}]}]:
                upsert_endpoint(s, company, parse_definition(d, 10_000, 100_000))
    finally:
        engine.dispose()
    await wait_for_temporal(settings)
    api = topo.spawn("api", [str(DATAAPI), "api"])  # hosts the query worker: sync queries run in this process

    async with httpx.AsyncClient(base_url=topo.base_url, timeout=60) as http:
        await until(lambda: api_ready(http), 60, "API /readyz 200", topo)
        r = await http.post("/api/v1/auth/api-key", json=tenant.login_body())
        assert r.status_code == 200, r.text
        auth = bearer(r.json()["access_token"])

        async def execute(slug, params=None):
            return await http.post(f"/api/v1/data-api/default/{slug}/execute", headers=auth,
                                   json={"parameter_values": params or {}})

        # Warm: the company's DuckDB open, a normal result served.
        for _ in range(3):
            r = await execute("amostra")
            assert r.status_code == 200 and r.json()["row_count"] > 0, r.text
        await asyncio.sleep(1)
        before = _rss_mb(api.pid)
        sampler = _Sampler(api.pid)
        sampler.start()
        try:
            for _ in range(3):
                r = await execute("enorme")
                assert r.status_code == 422, r.text[:300]
                assert r.json()["code"] == "RESULT_TOO_LARGE" and "narrow the query" in r.json()["message"]
            answers = await asyncio.gather(*[execute("enorme") for _ in range(3)])
            assert [a.json()["code"] for a in answers] == ["RESULT_TOO_LARGE"] * 3
        finally:
            sampler.stop.set()
            sampler.join()
        await asyncio.sleep(3)  # DuckDB's allocator returns freed pages within seconds (its background thread)
        settled = _rss_mb(api.pid)
        print(f"\nAPI RSS: {before:.0f} MB before, {sampler.peak:.0f} MB peak during six 300 MB queries, "
              f"{settled:.0f} MB after")
        assert settled - before < 50, (before, sampler.peak, settled, _big_mappings(api.pid))
        r = await execute("amostra")
        assert r.status_code == 200, r.text

        # Async: the job fails with the same message.
        r = await execute("enorme-async")
        assert r.status_code == 202, r.text
        polling = r.json()["polling_url"]
        job = await until(lambda: _finished(http, polling, auth), 60, "async job finished", topo)
        assert job["status"] == "failed" and "narrow the query" in job["error"], job

        # The pattern that froze the API for 30 s on Python's re: answered at once, /healthz meanwhile.
        timings = []
        for _ in range(7):
            started = time.perf_counter()
            r = await execute("padrao", {"s": "a" * 30 + "!"})
            timings.append(time.perf_counter() - started)
            assert r.status_code == 422 and r.json()["code"] == "INVALID_PARAMETER", r.text
        r = await execute("padrao", {"s": "aaaa"})
        assert r.status_code == 200 and r.json()["rows"] == [{"s": "aaaa"}], r.text

        async def healthz():
            started = time.perf_counter()
            assert (await http.get("/healthz")).status_code == 200
            return time.perf_counter() - started

        burst = [execute("padrao", {"s": "a" * 9_999 + "!"}) for _ in range(20)]
        results = await asyncio.gather(*burst, *[healthz() for _ in range(5)])
        assert all(a.status_code == 422 for a in results[:20])
        health = results[20:]
        print(f"pattern (a+)+$ on 'a'*30+'!': median {statistics.median(timings) * 1000:.1f} ms, "
              f"max {max(timings) * 1000:.1f} ms; /healthz during 20 calls with 10,000 characters: "
              f"max {max(health) * 1000:.1f} ms")
        assert statistics.median(timings) < 0.05, timings
        assert max(health) < 1.0, health
    topo.check_alive()


async def _finished(http: httpx.AsyncClient, polling: str, auth: dict) -> dict | None:
    job = (await http.get(polling, headers=auth)).json()
    return job if job["status"] != "processing" else None
