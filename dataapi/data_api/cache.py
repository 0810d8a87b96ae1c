"""The result cache of sync executions (endpoints with ``cache_seconds`` > 0): a repeated question is answered with
the stored result of an earlier execution of the same question on the same data, without a new execution.

**The key** is a SHA-256 over everything a result depends on: the company, the endpoint (its id) and its definition
(SQL, parameter specs, ``max_rows``), the company database's **data version** (the name ``CURRENT`` points at, which
``dataapi data load`` switches atomically) and the canonical coerced parameter values (share-context pins
included: ``param_values.coerce`` puts the pinned value in place of the caller's). A load or a definition change
gives every later call a new key, so older entries are unreachable at once; they age out of the memory tier and
their index rows are purged when their endpoint stores again. The key is taken *before* the execution starts, so a
load that lands during an execution files its result under the older version, which no later call asks for.
A company without a ``CURRENT`` (no load yet, or a data directory this process does not see) is never cached.

**Two tiers.** ``MemoryTier``: an LRU of result documents in this process, bounded in bytes. ``SharedTier``: an
index row per key in the metadata store (``result_cache``) naming the result artifact its execution stored and
kept in the artifact store, so that every API process shares the hits of one execution. Documents over
``max_entry_bytes`` are cached in neither. An entry answers while its age is under the endpoint's *current*
``cache_seconds`` (and under the caller's ``max-age``, when given).

**Single flight** (``Flights``): concurrent identical misses of one process wait for the first one's execution.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, bindparam, delete
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite

from dataapi.models import CachedResult
from dataapi.storage.base import ArtifactNotFound, ArtifactStore

_VERSION_RE = re.compile(r"db-\d{6,}\.duckdb")
ENTRY_OVERHEAD = 256  # bytes counted per entry beside its document: the key, the entry and the LRU's links


@dataclass(frozen=True)
class Entry:
    """One cached result: the stored document ``{columns, rows, row_count, truncated}`` and its execution."""

    document: bytes
    job_id: str
    executed_at: str
    stored_at: float  # epoch seconds the execution's result was stored
    result_key: str

    @property
    def size(self) -> int:
        return len(self.document) + ENTRY_OVERHEAD

    def age(self, now: float) -> float:
        return max(now - self.stored_at, 0.0)


@dataclass
class CacheStats:
    """What one process's cache did since it was made (exported by ``/metrics``)."""

    hits: int = 0  # answered from the cache (either tier)
    shared_hits: int = 0  # of those, found through the shared tier
    misses: int = 0  # cacheable calls that executed
    coalesced: int = 0  # misses that waited for an identical execution (single flight)
    evictions: int = 0  # entries the memory tier dropped to stay within its bytes
    too_large: int = 0  # results over the size threshold, not cached
    bytes: int = 0  # the memory tier's bytes now
    entries: int = 0  # the memory tier's entries now
    max_bytes: int = 0  # the memory tier's bound (the setting)


# --- the key ------------------------------------------------------------------------------------------------


class DataVersions:
    """The data version of each company: the database file ``<data_dir>/<company>/CURRENT`` names. One stat() per
    call; the file is read again only when its identity changed (a load replaces it, so its inode changes)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._seen: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._paths: dict[str, str] = {}  # company slug -> its CURRENT's path, joined once

    def of(self, company_slug: str) -> str | None:
        """The version name, or None when there is no CURRENT (nothing loaded, or not visible here)."""
        path = self._paths.get(company_slug)
        if path is None:
            if len(self._paths) >= 65536:
                self._paths.clear()
            path = self._paths[company_slug] = str(self.data_dir / company_slug / "CURRENT")
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        seen = self._seen.get(company_slug)
        if seen is not None and seen[0] == stamp:
            return seen[1]
        try:
            name = Path(path).read_text().strip()
        except FileNotFoundError:
            return None
        if not _VERSION_RE.fullmatch(name):
            return None
        self._seen[company_slug] = (stamp, name)
        return name


def cache_key(company_id: int, endpoint_id: int, sql: str, param_specs: list[dict], max_rows: int,
              data_version: str, params: dict[str, Any]) -> str:
    """The key of one question on one version of the data (hex SHA-256)."""
    material = orjson.dumps([company_id, endpoint_id, sql, param_specs, max_rows, data_version, params],
                            option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(material).hexdigest()


# --- the memory tier ----------------------------------------------------------------------------------------


class MemoryTier:
    """An LRU of entries bounded in bytes (documents plus ``ENTRY_OVERHEAD`` each)."""

    def __init__(self, max_bytes: int, stats: CacheStats):
        self.max_bytes, self.stats = max_bytes, stats
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Keeps ``entry`` (evicting the least recently used); False when it cannot fit at all."""
        if entry.size > self.max_bytes:
            return False
        self.drop(key)
        while self._entries and self.stats.bytes + entry.size > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._account(-old.size, -1)
            self.stats.evictions += 1
        self._entries[key] = entry
        self._account(entry.size, 1)
        return True

    def drop(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._account(-old.size, -1)

    def _account(self, size: int, count: int) -> None:
        self.stats.bytes += size
        self.stats.entries += count


# --- the shared tier ----------------------------------------------------------------------------------------


def _table() -> Table:
    return CachedResult.metadata.tables[str(CachedResult.__tablename__)]


_INDEX = _table()
_FIND = core_select(_INDEX.c.job_id, _INDEX.c.result_key, _INDEX.c.executed_at, _INDEX.c.stored_at).where(
    _INDEX.c.key == bindparam("key"), _INDEX.c.company_id == bindparam("company_id"))
_FORGET = delete(_INDEX).where(_INDEX.c.key == bindparam("key"))
_PURGE = delete(_INDEX).where(_INDEX.c.endpoint_id == bindparam("endpoint_id"),
                              _INDEX.c.expires_at < bindparam("now"))
_PURGE_ALL = delete(_INDEX).where(_INDEX.c.expires_at < bindparam("now"))
_UPSERT = {name: dialect.insert(_INDEX) for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_REPLACED = ("job_id", "result_key", "executed_at", "size_bytes", "stored_at", "expires_at")


def _as_epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


class SharedTier:
    """The index rows in the metadata store and the result artifacts they name."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore):
        self.engine, self.artifacts = engine, artifacts
        insert = _UPSERT.get(engine.dialect.name)
        if insert is None:
            raise ValueError(f"the result cache's shared tier does not support {engine.dialect.name}")
        self._upsert = insert.on_conflict_do_update(
            index_elements=["key"], set_={name: insert.excluded[name] for name in _REPLACED})

    def find(self, key: str, company_id: int) -> Entry | None:
        """The entry of ``key``, its document read from the artifact store; None when there is none or its
        artifact is gone (the row is then dropped)."""
        with self.engine.connect() as conn:
            row = conn.execute(_FIND, {"key": key, "company_id": company_id}).first()
        if row is None:
            return None
        try:
            document = self.artifacts.get_bytes(row.result_key)
        except ArtifactNotFound:
            self.forget(key)
            return None
        return Entry(document, row.job_id, row.executed_at, _as_epoch(row.stored_at), row.result_key)

    def save(self, key: str, company_id: int, endpoint_id: int, entry: Entry, cache_seconds: int) -> None:
        """Indexes ``entry`` (replacing an older one of the key) and purges the endpoint's expired rows."""
        stored = datetime.fromtimestamp(entry.stored_at, UTC)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(_PURGE, {"endpoint_id": endpoint_id, "now": now})
            conn.execute(self._upsert, {
                "key": key, "company_id": company_id, "endpoint_id": endpoint_id, "job_id": entry.job_id,
                "result_key": entry.result_key, "executed_at": entry.executed_at,
                "size_bytes": len(entry.document), "stored_at": stored,
                "expires_at": stored + timedelta(seconds=cache_seconds)})

    def forget(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_FORGET, {"key": key})


def purge_expired(conn: Connection, now: datetime) -> int:
    """Deletes every index row expired by ``now`` (each endpoint's own are also purged whenever it stores);
    returns how many. The result artifacts stay: they are their jobs' results."""
    return conn.execute(_PURGE_ALL, {"now": now}).rowcount or 0


# --- single flight ------------------------------------------------------------------------------------------


class Flights:
    """Executions under way, by key: the first miss of a key leads (executes), later identical misses follow
    (wait for it). The leader's flight ends when it stores or gives up (``land``), whichever way it ends."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[None]] = {}

    def join(self, key: str) -> tuple[asyncio.Future[None], bool]:
        """The flight of ``key`` and whether the caller leads it (and must ``land`` it) or follows (waits)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = asyncio.get_running_loop().create_future()
        return flight, True

    def land(self, key: str, flight: asyncio.Future[None]) -> None:
        """Ends ``flight``, its followers wake up; a later flight of the same key is left alone."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(None)

    def __len__(self) -> int:
        return len(self._flights)


# --- the cache ----------------------------------------------------------------------------------------------


class ResultCache:
    """One process's result cache: the memory tier in front of the shared tier, and the flights under way."""

    def __init__(self, *, max_bytes: int, max_entry_bytes: int, data_dir: Path, shared: SharedTier | None):
        self.stats = CacheStats(max_bytes=max_bytes)
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes) if max_bytes else max_entry_bytes
        self.memory = MemoryTier(max_bytes, self.stats)
        self.versions = DataVersions(data_dir)
        self.shared = shared
        self.flights = Flights()

    def cacheable(self, size: int) -> bool:
        return size <= self.max_entry_bytes

    def local(self, key: str, max_age: float, now: float) -> Entry | None:
        """The memory tier's entry of ``key`` if younger than ``max_age`` seconds (an older one is dropped)."""
        entry = self.memory.get(key)
        if entry is None:
            return None
        if entry.age(now) >= max_age:
            self.memory.drop(key)
            return None
        return entry

    def from_shared(self, key: str, company_id: int, max_age: float, now: float) -> Entry | None:
        """The shared tier's entry if younger than ``max_age`` (blocking: the store and the artifact are read;
        it touches nothing of this process, so it may run on a thread; ``keep`` it on the loop)."""
        if self.shared is None:
            return None
        entry = self.shared.find(key, company_id)
        if entry is None or entry.age(now) >= max_age or not self.cacheable(len(entry.document)):
            return None
        return entry

    def keep(self, key: str, entry: Entry) -> bool:
        """Keeps a result in memory; False (and nothing kept) when it is over the threshold. The memory tier and
        the stats belong to the event loop: called there only."""
        if not self.cacheable(len(entry.document)):
            self.stats.too_large += 1
            self.memory.drop(key)
            return False
        self.memory.put(key, entry)
        return True
