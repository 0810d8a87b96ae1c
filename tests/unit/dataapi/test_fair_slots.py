"""FairSlots (dataapi/fair_slots.py): DuckDB slots shared by companies, the next free one going to the waiting
company that runs the fewest queries."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dataapi.fair_slots import FairSlots


class Holder:
    """A task that takes a slot for ``company`` and keeps it until released."""

    def __init__(self, slots: FairSlots, company: str, started: list[str]):
        self.release = asyncio.Event()

        async def run() -> None:
            async with slots.slot(company):
                started.append(company)
                await self.release.wait()

        self.task = asyncio.create_task(run())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_company_alone_uses_every_slot():
    slots, started = FairSlots(3), []
    holders = [Holder(slots, "busy", started) for _ in range(4)]
    await settle()
    assert started == ["busy"] * 3 and slots.running("busy") == 3 and slots.waiting("busy") == 1
    for h in holders:
        h.release.set()
    await asyncio.gather(*(h.task for h in holders))
    assert slots.in_use == 0 and slots.waiting("busy") == 0


async def test_a_newcomer_gets_the_next_free_slot_before_a_company_that_runs_more():
    slots, started = FairSlots(2), []
    busy = [Holder(slots, "busy", started) for _ in range(5)]  # 2 run, 3 wait
    await settle()
    calm = Holder(slots, "calm", started)  # arrives last
    await settle()
    assert started == ["busy", "busy"] and slots.waiting("calm") == 1
    busy[0].release.set()
    await settle()
    assert started[-1] == "calm" and slots.running("calm") == 1 and slots.running("busy") == 1
    busy[1].release.set()
    await settle()
    assert started[-1] == "busy" and slots.running("busy") == 1  # calm waits for nothing more: busy's turn
    for h in [*busy, calm]:
        h.release.set()
    await asyncio.gather(*(h.task for h in [*busy, calm]))
    assert slots.in_use == 0 and not slots.waiting("busy")


async def test_among_companies_running_as_many_the_earliest_waiter_goes_first():
    slots, started = FairSlots(1), []
    first = Holder(slots, "a", started)
    await settle()
    waiting = [Holder(slots, "b", started), Holder(slots, "c", started)]
    await settle()
    first.release.set()
    await settle()
    assert started == ["a", "b"]
    for h in waiting:
        h.release.set()
    await asyncio.gather(first.task, *(h.task for h in waiting))
    assert started == ["a", "b", "c"]


async def test_a_waiter_that_goes_away_takes_no_slot():
    slots, started = FairSlots(1), []
    first = Holder(slots, "a", started)
    await settle()
    gone = Holder(slots, "b", started)
    after = Holder(slots, "c", started)
    await settle()
    gone.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone.task
    assert slots.waiting("b") == 0
    first.release.set()
    await settle()
    assert started == ["a", "c"] and slots.running("c") == 1
    after.release.set()
    await after.task
    assert slots.in_use == 0


def test_at_least_one_slot():
    with pytest.raises(ValueError):
        FairSlots(0)
