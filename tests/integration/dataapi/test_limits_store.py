"""Execute limits shared through the metadata store (SQLite and PostgreSQL): two ``ExecuteLimits`` on their own
engines stand for two API processes; their counts meet in ``rate_counters``, overrides come from
``company_limits``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest
from sqlmodel import select

from dataapi.db import make_engine, session_scope
from dataapi.errors import Invalid, RateLimited
from dataapi.identity import service as identity
from dataapi.limits import ExecuteLimits, Override, get_override, set_override, sync_counts
from dataapi.models import Company, CompanyLimits, RateCounter
from dataapi.settings import Settings
from tests.conftest import unique_slug


async def clear_of_the_minute() -> None:
    """Counts live in one-minute windows: a test that must see them together starts well inside one."""
    into = time.time() % 60
    if into > 50:
        await asyncio.sleep(60.5 - into)


@pytest.fixture
def engines(db_url):
    made = [make_engine(db_url), make_engine(db_url)]
    yield made
    for engine in made:
        engine.dispose()


@pytest.fixture
def company_id(engines) -> int:
    with session_scope(engines[0]) as s:
        return identity.create_company(s, unique_slug()).id


SYNC = 0.05  # the sync interval of these tests' processes


def new_key() -> str:
    """A key scope no API key of the session's store has (their ids are small)."""
    return f"key:{uuid.uuid4().int % 10**12 + 10**12}"


def limits(engine, **settings) -> ExecuteLimits:
    return ExecuteLimits(engine, Settings(rate_limit_sync_seconds=SYNC, **settings))


async def synced(*procs: ExecuteLimits) -> None:
    """Lets the background syncs of ``procs`` run (each admit starts one, then one per interval)."""
    await asyncio.sleep(SYNC * 6)


async def test_two_processes_share_a_company_limit(engines, company_id):
    await clear_of_the_minute()
    a, b = (limits(e, rate_limit_per_company=5) for e in engines)
    key_a, key_b = new_key(), new_key()
    for _ in range(3):
        a.admit(company_id, key_a)
    await synced(a)
    assert b.admit(company_id, key_b).remaining == 4  # b has not synced yet: its own request only
    await synced(b)  # b's first sync: a's three and its own one
    assert b.admit(company_id, key_b).remaining == 0
    with pytest.raises(RateLimited, match="company's limit"):
        b.admit(company_id, key_b)
    await synced(a, b)
    with pytest.raises(RateLimited):  # a keeps syncing a while after its requests: it knows b's two
        a.admit(company_id, key_a)
    with session_scope(engines[0]) as s:
        row = s.get(RateCounter, (f"company:{company_id}", int(time.time() // 60)))
        assert row is not None and row.count == 5
    await asyncio.gather(a.close(), b.close())


def test_concurrent_syncs_add_up(engines):
    """Every process's increments reach the shared row, however their transactions interleave."""
    scope, window = f"key:{unique_slug()}", int(time.time() // 60) * 60
    errors: list[BaseException] = []

    def add(engine) -> None:
        try:
            for _ in range(10):
                sync_counts(engine, window, {scope: 3, "company:0": 1}, [scope], [])
        except BaseException as e:  # reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(e,)) for e in engines for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    totals, _ = sync_counts(engines[0], window, {}, [scope], [])
    assert totals == {scope: 4 * 10 * 3}


async def test_an_override_is_read_with_the_next_sync(engines, company_id):
    await clear_of_the_minute()
    proc = limits(engines[0], rate_limit_per_key=100, sync_concurrency_per_company=3)
    with session_scope(engines[1]) as s:
        set_override(s, s.get(Company, company_id), Override(key_per_minute=2, sync_concurrency=1))
    key = new_key()
    assert proc.admit(company_id, key).limit == 100  # the defaults until this process's first sync
    await synced(proc)
    assert proc.limits(company_id).key_per_minute == 2 and proc.limits(company_id).sync_concurrency == 1
    assert proc.admit(company_id, key).limit == 2  # the second of two
    with pytest.raises(RateLimited):
        proc.admit(company_id, key)
    with session_scope(engines[1]) as s:
        company = s.get(Company, company_id)
        assert get_override(s, company) == Override(key_per_minute=2, sync_concurrency=1)
        set_override(s, company, Override())  # back to the defaults: the row goes
        assert get_override(s, company) == Override()
        assert s.get(CompanyLimits, company_id) is None
    await proc.sync()
    assert proc.admit(company_id, key).limit == 100
    await proc.close()


def test_an_override_must_be_a_limit(engines, company_id):
    with session_scope(engines[0]) as s:
        company = s.get(Company, company_id)
        with pytest.raises(Invalid, match="sync concurrency must be at least 1"):
            set_override(s, company, Override(sync_concurrency=0))
        with pytest.raises(Invalid, match="requests per minute must be at least 0"):
            set_override(s, company, Override(company_per_minute=-1))


async def test_rows_of_past_windows_are_deleted(engines):
    scope = f"key:{unique_slug()}"
    minute = int(time.time() // 60)
    with session_scope(engines[0]) as s:
        s.add(RateCounter(scope=scope, minute=minute - 5, count=9))
    proc = limits(engines[0], rate_limit_per_key=10)
    await proc.sync()
    with session_scope(engines[0]) as s:
        assert s.exec(select(RateCounter).where(RateCounter.scope == scope)).all() == []


async def test_without_the_store_limits_stay_local_and_keep_their_counts(caplog):
    engine = make_engine("postgresql://127.0.0.1:1/nothing", pool_pre_ping=False, pool_size=1, max_overflow=0)
    await clear_of_the_minute()
    proc = limits(engine, rate_limit_per_key=2)
    with caplog.at_level(logging.INFO, "dataapi.limits"):
        proc.admit(1, "key:1")
        await synced(proc)
        assert proc.admit(1, "key:1").remaining == 0
        with pytest.raises(RateLimited):
            proc.admit(1, "key:1")
        await synced(proc)
    assert caplog.text.count("rate limit counters not synced") == 1  # once per outage, not per attempt
    await proc.close()
    assert proc.counters.take_pending()[1] == {"key:1": 2}  # kept, to be sent when the store answers
    engine.dispose()
