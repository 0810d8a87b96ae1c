"""``FairSlots``: a fixed number of slots (DuckDB queries at once in one process) shared fairly by companies.

While slots are free, anybody takes one at once, so a company alone uses every slot. When callers wait, a freed
slot goes to the waiting company that holds the fewest slots (the longest-waiting caller among equals), so a
company that floods the process holds at most its share once others wait: the next free slot goes to a newcomer,
never to a company that already runs more. Nothing is preempted: a newcomer waits at most for the first running
query to end."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from itertools import count


class FairSlots:
    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._order = count()  # arrival order of waiters, across companies

    def running(self, company: str) -> int:
        return self._running.get(company, 0)

    def waiting(self, company: str) -> int:
        return len(self._waiting.get(company, ()))

    @property
    def in_use(self) -> int:
        return sum(self._running.values())

    @contextlib.asynccontextmanager
    async def slot(self, company: str) -> AsyncIterator[None]:
        await self._acquire(company)
        try:
            yield
        finally:
            self._release(company)

    async def _acquire(self, company: str) -> None:
        if self.in_use < self.slots and not self._waiting:
            self._running[company] = self._running.get(company, 0) + 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(company, deque()).append((next(self._order), turn))
        try:
            await turn
        except BaseException:  # the caller went away: its turn, if it came meanwhile, goes to the next one
            if turn.done() and not turn.cancelled():
                self._release(company)
            else:
                self._forget(company, turn)
            raise

    def _release(self, company: str) -> None:
        left = self._running.get(company, 0) - 1
        if left > 0:
            self._running[company] = left
        else:
            self._running.pop(company, None)
        while self._waiting and self.in_use < self.slots:
            self._hand_over()

    def _hand_over(self) -> None:
        """The free slot goes to the waiting company holding the fewest, the earliest waiter among equals."""
        chosen = min(self._waiting, key=lambda c: (self._running.get(c, 0), self._waiting[c][0][0]))
        queue = self._waiting[chosen]
        _, turn = queue.popleft()
        if not queue:
            del self._waiting[chosen]
        if not turn.done():
            self._running[chosen] = self._running.get(chosen, 0) + 1
            turn.set_result(None)

    def _forget(self, company: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(company)
        if queue is None:
            return
        for item in list(queue):
            if item[1] is turn:
                queue.remove(item)
        if not queue:
            del self._waiting[company]
