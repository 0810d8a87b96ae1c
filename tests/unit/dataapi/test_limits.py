"""The in-memory half of the execute limits (``dataapi.limits``): per-window counts merged with the store's
totals, the quota the headers show, the per-company turns of sync executions, and the hot path's cost."""

from __future__ import annotations

import asyncio
import time

import pytest

from dataapi.errors import RateLimited
from dataapi.limits import CompanySlots, Limits, Override, RequestCounters


class Clock:
    def __init__(self, now: float = 1_800_000_010.0):  # 10 s into a minute
        self.now = now

    def __call__(self) -> float:
        return self.now


def budgets(key: int = 3, company: int = 0, key_scope: str = "key:1", company_id: int = 7):
    return ((key_scope, key, "API key"), (f"company:{company_id}", company, "company"))


def test_a_key_gets_its_limit_per_minute_then_a_429_until_the_window_resets():
    clock = Clock()
    counters = RequestCounters(clock)
    quotas = [counters.admit(budgets(key=3)) for _ in range(3)]
    assert [q.remaining for q in quotas] == [2, 1, 0]
    assert {q.limit for q in quotas} == {3} and {q.reset for q in quotas} == {50}
    assert quotas[0].headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "2", "RateLimit-Reset": "50",
                                   "RateLimit-Policy": '3;w=60;comment="API key"'}
    clock.now += 20
    with pytest.raises(RateLimited) as refused:
        counters.admit(budgets(key=3))
    assert refused.value.status == 429 and refused.value.code == "RATE_LIMITED"
    assert refused.value.headers == {"Retry-After": "30", "RateLimit-Limit": "3", "RateLimit-Remaining": "0",
                                     "RateLimit-Reset": "30", "RateLimit-Policy": '3;w=60;comment="API key"'}
    assert "the API key's limit is 3 per minute" in refused.value.message
    clock.now += 30  # the next minute
    assert counters.admit(budgets(key=3)).remaining == 2


def test_the_company_limit_spans_its_keys_and_the_tightest_limit_is_shown():
    counters = RequestCounters(Clock())
    assert counters.admit(budgets(key=10, company=3, key_scope="key:1")).remaining == 2  # company: 2 left
    assert counters.admit(budgets(key=10, company=3, key_scope="key:2")).remaining == 1
    q = counters.admit(budgets(key=1, company=3, key_scope="key:3"))
    assert (q.limit, q.remaining) == (1, 0)  # the key's is as tight as the company's, and smaller
    with pytest.raises(RateLimited, match="company's limit"):
        counters.admit(budgets(key=10, company=3, key_scope="key:4"))
    # another company counts on its own
    assert counters.admit(budgets(key=10, company=3, key_scope="key:9", company_id=8)).remaining == 2


def test_no_limit_no_quota_and_nothing_counted():
    counters = RequestCounters(Clock())
    assert counters.admit(budgets(key=0, company=0)) is None
    assert not counters.pending


def test_a_refused_request_is_not_counted():
    counters = RequestCounters(Clock())
    counters.admit(budgets(key=1, company=5))
    for _ in range(3):
        with pytest.raises(RateLimited):
            counters.admit(budgets(key=1, company=5))
    assert counters.admit(budgets(key=1, company=5, key_scope="key:2")).remaining == 0  # the new key's one
    window, increments, _ = counters.take_pending()
    assert increments == {"key:1": 1, "key:2": 1, "company:7": 2}


def test_the_stores_totals_count_other_processes_requests():
    counters = RequestCounters(Clock())
    counters.admit(budgets(key=5))
    window, increments, scopes = counters.take_pending()
    assert increments == {"key:1": 1} and scopes == ["key:1"]
    counters.admit(budgets(key=5))  # while the sync runs
    counters.synced(window, {"key:1": 3})  # two from other processes, and ours
    assert counters.admit(budgets(key=5)).remaining == 5 - 3 - 1 - 1  # and the two since
    with pytest.raises(RateLimited):
        counters.admit(budgets(key=5))


def test_a_failed_sync_sends_its_counts_again():
    counters = RequestCounters(Clock())
    counters.admit(budgets(key=5))
    window, increments, _ = counters.take_pending()
    counters.admit(budgets(key=5))
    counters.sync_failed(window)
    assert counters.take_pending()[1] == {"key:1": 2}


def test_counts_of_a_past_window_are_dropped():
    clock = Clock()
    counters = RequestCounters(clock)
    counters.admit(budgets(key=5))
    clock.now += 60
    assert not counters.pending
    window, increments, scopes = counters.take_pending()
    assert window == counters.window() and increments == {} and scopes == []


def test_an_override_replaces_only_what_it_sets():
    defaults = Limits(company_per_minute=100, key_per_minute=10, sync_concurrency=4)
    assert Override(key_per_minute=0).over(defaults) == Limits(100, 0, 4)
    assert Override(sync_concurrency=1, company_per_minute=5).over(defaults) == Limits(5, 10, 1)


# --- fairness ----------------------------------------------------------------------------------------------

async def test_a_company_over_its_bound_waits_its_turn_while_others_run():
    slots = CompanySlots(wait_seconds=2.0)
    order: list[str] = []
    release = asyncio.Event()

    async def call(company: int, name: str, hold: bool = False) -> None:
        async with slots.slot(company, bound=1):
            order.append(name)
            if hold:
                await release.wait()

    first = asyncio.create_task(call(1, "a1", hold=True))
    await asyncio.sleep(0)
    second = asyncio.create_task(call(1, "a2"))
    await asyncio.wait_for(call(2, "b1"), 1)  # company 2 is not held up by company 1
    assert order == ["a1", "b1"] and slots.running(1) == 1
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a1", "b1", "a2"] and slots.running(1) == 0 and slots.running(2) == 0


async def test_a_company_over_its_bound_gets_429_after_the_wait():
    slots = CompanySlots(wait_seconds=0.1)
    release = asyncio.Event()

    async def hold() -> None:
        async with slots.slot(1, bound=2):
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(RateLimited) as refused:
        async with slots.slot(1, bound=2):
            pass
    assert time.monotonic() - started >= 0.1
    assert refused.value.headers == {"Retry-After": "1"} and "at most 2" in refused.value.message
    release.set()
    await asyncio.gather(*holders)
    assert slots.running(1) == 0
    async with slots.slot(1, bound=2):  # nothing leaked
        assert slots.running(1) == 1


async def test_a_waiter_that_goes_away_leaves_no_slot_behind():
    slots = CompanySlots(wait_seconds=5)
    release = asyncio.Event()

    async def hold() -> None:
        async with slots.slot(1, bound=1):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiter.cancel()  # the client disconnected
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert slots.running(1) == 0


async def test_a_lowered_bound_holds_once_the_calls_above_it_end():
    """An override lowering the bound while calls run: new calls wait until the company is under the new bound."""
    slots = CompanySlots(wait_seconds=5)
    releases = [asyncio.Event(), asyncio.Event()]

    async def hold(release: asyncio.Event) -> None:
        async with slots.slot(1, bound=2):
            await release.wait()

    holders = [asyncio.create_task(hold(r)) for r in releases]
    await asyncio.sleep(0)
    entered = asyncio.Event()

    async def lowered() -> None:
        async with slots.slot(1, bound=1):
            entered.set()

    late = asyncio.create_task(lowered())
    await asyncio.sleep(0.01)
    releases[0].set()
    await asyncio.sleep(0.01)
    assert not entered.is_set() and slots.running(1) == 1  # one still runs: at the new bound
    releases[1].set()
    await asyncio.wait_for(late, 1)
    await asyncio.gather(*holders)
    assert entered.is_set() and slots.running(1) == slots.waiting(1) == 0
