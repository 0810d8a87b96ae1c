"""The result cache's shared tier on SQLite and PostgreSQL: an index row per key pointing at a stored result,
found only by its own company, replaced by a newer execution, dropped when its artifact is gone, purged when
expired."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from dataapi.data_api.cache import Entry, SharedTier, purge_expired
from dataapi.db import make_engine
from dataapi.models import CachedResult
from dataapi.storage.local import LocalArtifactStore


@pytest.fixture
def shared(db_url, tmp_path):
    engine = make_engine(db_url)
    yield SharedTier(engine, LocalArtifactStore(tmp_path / "artifacts"))
    engine.dispose()


def stored(shared: SharedTier, job: str, document: bytes, stored_at: float | None = None) -> Entry:
    key = f"results/acme/{job}.json"
    shared.artifacts.put_bytes(key, document)
    return Entry(document, job, "2026-01-01T00:00:00Z", stored_at or time.time(), key)


def rows(shared: SharedTier, endpoint_id: int) -> int:
    with shared.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(CachedResult)
                            .where(CachedResult.endpoint_id == endpoint_id)).scalar_one()


def test_an_entry_is_found_by_its_company_only_and_replaced_by_a_newer_one(shared):
    key, endpoint = uuid.uuid4().hex + uuid.uuid4().hex, int(time.time_ns() % 1_000_000_000)
    first = stored(shared, "a" * 24, b'{"rows":[1]}')
    shared.save(key, 1, endpoint, first, 60)
    found = shared.find(key, 1)
    assert found is not None and (found.document, found.job_id) == (first.document, first.job_id)
    assert abs(found.stored_at - first.stored_at) < 0.01
    assert shared.find(key, 2) is None  # another company's key is just missing
    newer = stored(shared, "b" * 24, b'{"rows":[2]}')
    shared.save(key, 1, endpoint, newer, 60)
    assert shared.find(key, 1).job_id == "b" * 24 and rows(shared, endpoint) == 1
    shared.artifacts.delete_prefix(newer.result_key)  # retention removed the result: the row goes too
    assert shared.find(key, 1) is None and rows(shared, endpoint) == 0


def test_expired_rows_are_purged(shared):
    endpoint = int(time.time_ns() % 1_000_000_000) + 1
    old = stored(shared, "c" * 24, b"{}", stored_at=time.time() - 120)
    shared.save(uuid.uuid4().hex, 1, endpoint, old, 60)  # expired a minute ago
    assert rows(shared, endpoint) == 1
    shared.save(uuid.uuid4().hex, 1, endpoint, stored(shared, "d" * 24, b"{}"), 60)  # purges the endpoint's expired
    shared.save(uuid.uuid4().hex, 1, endpoint, stored(shared, "e" * 24, b"{}"), 60)
    assert rows(shared, endpoint) == 2
    with shared.engine.begin() as conn:
        purged = purge_expired(conn, datetime.now(UTC) + timedelta(seconds=61))
    assert purged >= 2 and rows(shared, endpoint) == 0
