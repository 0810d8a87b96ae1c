"""The result cache's parts that need no stack: the key, the data version, the memory tier's bound, the flights."""

from __future__ import annotations

import asyncio
import os

import pytest

from dataapi.data_api.cache import ENTRY_OVERHEAD, CacheStats, DataVersions, Entry, Flights, MemoryTier, cache_key
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.params import DefinitionError


def entry(size: int, job: str = "j") -> Entry:
    return Entry(b"x" * size, job, "2026-01-01T00:00:00Z", 0.0, f"results/c/{job}.json")


def test_the_key_changes_with_everything_a_result_depends_on():
    base = (1, 7, "SELECT 1", [{"name": "a", "type": "integer"}], 100, "db-000001.duckdb", {"a": 1})
    key = cache_key(*base)
    assert key == cache_key(*base) and len(key) == 64
    for i, other in enumerate((2, 8, "SELECT 2", [{"name": "a", "type": "string"}], 99, "db-000002.duckdb",
                               {"a": 2})):
        changed = list(base)
        changed[i] = other
        assert cache_key(*changed) != key, i
    assert cache_key(*base[:-1], {"a": "1"}) != key  # a value's type is part of it


def test_the_data_version_follows_current(tmp_path):
    versions = DataVersions(tmp_path)
    assert versions.of("acme") is None  # nothing loaded: never cached
    cdir = tmp_path / "acme"
    cdir.mkdir()
    (cdir / "CURRENT").write_text("db-000001.duckdb\n")
    assert versions.of("acme") == "db-000001.duckdb"
    tmp = cdir / "CURRENT.tmp"
    tmp.write_text("db-000002.duckdb\n")
    os.replace(tmp, cdir / "CURRENT")  # what a load does
    assert versions.of("acme") == "db-000002.duckdb"
    (cdir / "CURRENT").write_text("../../etc/passwd\n")
    assert versions.of("acme") is None


def test_the_memory_tier_evicts_the_least_recently_used_within_its_bytes():
    stats = CacheStats()
    tier = MemoryTier(3 * (100 + ENTRY_OVERHEAD), stats)
    for name in "abc":
        assert tier.put(name, entry(100, name))
    assert tier.get("a") is not None  # a is now the most recently used
    assert tier.put("d", entry(100, "d"))
    assert tier.get("b") is None and tier.get("a") is not None
    assert stats.evictions == 1 and stats.entries == 3 and stats.bytes == 3 * (100 + ENTRY_OVERHEAD)
    assert not tier.put("huge", entry(10_000))  # never fits: nothing is evicted for it
    assert stats.entries == 3
    tier.put("a", entry(10, "a2"))  # replacing a key accounts for the old entry
    assert stats.bytes == 2 * (100 + ENTRY_OVERHEAD) + 10 + ENTRY_OVERHEAD
    tier.drop("a")
    tier.drop("a")
    assert stats.entries == 2


async def test_one_flight_per_key_and_a_late_landing_leaves_the_next_one_alone():
    flights = Flights()
    first, leads = flights.join("k")
    again, follows = flights.join("k")
    assert leads and not follows and again is first
    flights.land("k", first)
    assert first.done() and len(flights) == 0
    second, leads = flights.join("k")
    assert leads and second is not first
    flights.land("k", first)  # the first leader's safety net firing late
    assert not second.done() and len(flights) == 1
    waiter = asyncio.ensure_future(asyncio.shield(second))
    flights.land("k", second)
    await asyncio.wait_for(waiter, 1)


@pytest.mark.parametrize("value", [-1, 1.5, "60", True, None, 30 * 86_400 + 1])
def test_cache_seconds_must_be_a_whole_number_of_seconds(value):
    with pytest.raises(DefinitionError, match="cache_seconds"):
        parse_definition({"slug": "x", "sql": "SELECT 1 AS x", "cache_seconds": value}, 100, 1000)
    assert parse_definition({"slug": "x", "sql": "SELECT 1 AS x"}, 100, 1000).cache_seconds == 0
    assert parse_definition({"slug": "x", "sql": "SELECT 1 AS x", "cache_seconds": 60}, 100, 1000).cache_seconds == 60
