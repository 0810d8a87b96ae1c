"""In-process handoff of sync results: the API process hosts a query worker, so with eager start the query of
a sync execution (a local activity) usually runs in the very process whose request waits for it. The activity
publishes its outcome here once the result and the job row are committed, and the request answers at once
instead of waiting for the workflow's completion to travel through Temporal's history (~15-30 ms).

Nothing is skipped: the workflow still records the activity and completes as before, a few milliseconds
after the response. When the query ran anywhere else (no eager start, another worker, a retry after a
crash), nobody publishes here and the request reads the workflow's result as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dataapi.messages import QueryOutput


@dataclass(frozen=True)
class Handoff:
    outcome: QueryOutput
    document: bytes | None = None  # the stored result document, so the request need not read it back


class SyncResults:
    """Futures keyed by job id, resolved by the query activity of the same process and event loop."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Handoff]] = {}

    def expect(self, job_id: str) -> asyncio.Future[Handoff]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        return future

    def discard(self, job_id: str) -> None:
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.cancel()

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
