"""In-process handoff of sync results: the API process hosts a query worker, so with eager start the query of
a sync execution (a local activity) usually runs in the very process whose request waits for it. The activity
publishes its outcome here once the result and the job row are committed, and the request answers at once
instead of waiting for the workflow's completion to travel through Temporal's history (~15-30 ms).

Nothing is skipped: the workflow still records the activity and completes as before, a few milliseconds
after the response. When the query ran anywhere else (no eager start, another worker, a retry after a
crash), nobody publishes here and the request reads the workflow's result as before.

The query itself starts before the workflow does: the embedded worker registers how to start one
(``prefetching``), the request starts it when it begins to wait (``expect``), and the local activity takes it
over (``adopt``) instead of running it again, so DuckDB works while Temporal records the start (a few ms).
A query nobody takes over (no eager start, the start failed, the request gave up) is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from dataapi.messages import QueryInput, QueryOutput


@dataclass(frozen=True)
class Handoff:
    outcome: QueryOutput
    document: bytes | None = None  # the stored result document, so the request need not read it back


class Started(Protocol):
    """A query started ahead of its activity (activities.query.RunningQuery)."""

    def stop(self) -> None: ...


class SyncResults:
    """Futures keyed by job id, resolved by the query activity of the same process and event loop; and the
    queries started for them ahead of their activity."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Handoff]] = {}
        self._started: dict[str, Started] = {}
        self._start: Callable[[QueryInput], Started] | None = None

    @contextlib.contextmanager
    def prefetching(self, start: Callable[[QueryInput], Started]) -> Iterator[None]:
        """While the embedded worker runs: ``expect`` starts each query with ``start``."""
        self._start = start
        try:
            yield
        finally:
            self._start = None

    def expect(self, job_id: str, inp: QueryInput | None = None) -> asyncio.Future[Handoff]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        if inp is not None and self._start is not None:
            self._started[job_id] = self._start(inp)
        return future

    def adopt(self, job_id: str) -> Started | None:
        """The query started for ``job_id``, handed over once (to its local activity)."""
        return self._started.pop(job_id, None)

    def stop_started(self, job_id: str) -> None:
        """The query started for ``job_id`` will not be taken over here (no eager start, say): stop it."""
        started = self._started.pop(job_id, None)
        if started is not None:
            started.stop()

    def discard(self, job_id: str) -> None:
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.cancel()
        self.stop_started(job_id)

    def publish(self, job_id: str, outcome: QueryOutput, document: bytes | None = None) -> None:
        """Called by the activity after the outcome is stored; a job nobody waits for here is ignored."""
        handoff = Handoff(outcome, document)
        future = self._waiting.pop(job_id, None)
        if future is None or future.done():
            return
        loop = future.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            future.set_result(handoff)
        else:  # published from another thread or loop: hand it to the waiting loop
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(handoff))


sync_results = SyncResults()  # the process's one registry: the API's requests and its embedded worker share it
