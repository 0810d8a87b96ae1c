"""The sync fast lane: how a sync execution is answered from the process that ran its query.

Every sync execution is a ``QueryWorkflow`` whose query runs as a local activity, wherever its workflow task
runs. When the API process hosts a query worker on its own Temporal client, Temporal usually hands the first
workflow task back in the start's response (eager start) and the query runs in this very process. The lane
takes three shortcuts there, none of which changes what Temporal records:

- **prefetch**: the request starts the query (through the embedded worker's activities) just before it
  starts the workflow, so DuckDB works while Temporal persists the start;
- **adoption**: the query activity, when it runs here, reports it (``adopt``: "I run here, for this job")
  and takes over the query started for it instead of running it again (endpoint SQL is a read-only SELECT);
- **handoff**: once the result and the job row are stored, the activity publishes its outcome and the stored
  document to the waiting request (``publish``), which answers at once instead of waiting for the
  workflow's completion to travel through Temporal's history and be read back.

**Fallback**: whenever the query runs elsewhere (no eager start, another worker, a retry after a workflow
task failure), nobody adopts or publishes here: the request stops the query it started and reads the
workflow's result. Each request learns where its query runs only from the activity's report, never from
the SDK's internals. A report that comes too late costs speed, never an answer: the activity then runs the
query itself and its handoff is still taken; and the workflow result is read beside the handoff after a
grace, so a query that moved elsewhere is never waited for in vain.

``SyncLane(enabled=False)`` (``DATAAPI_SYNC_FAST_LANE=false``) turns all three off: every sync call starts
its workflow and waits for its result through Temporal, the activities find nothing to adopt and publish to
no one. A lane no worker serves (a thin API: ``DATAAPI_API_QUERY_WORKER=false``) behaves the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from dataapi.messages import QueryInput, QueryOutput
from dataapi.statuses import QueryStatus

log = logging.getLogger("dataapi.sync")

# How long the request waits for the activity's report that the query runs here before it takes the query to
# run elsewhere. With eager start the report comes within a few event-loop turns of the start's response.
ADOPTION_WINDOW = 0.25
# How long an adopted query may take before the request also reads the workflow's result (one RPC saved per
# call below it; beside the handoff above it, in case the query moved to another worker).
HANDOFF_GRACE = 2.0
# The outcome of a call past its deadline: the caller's 408.
TIMED_OUT = QueryOutput(status=QueryStatus.FAILED, error="Execution timed out", error_type="ExecutionTimeout")


class Prefetched(Protocol):
    """A query started ahead of its activity (``activities.query.RunningQuery``)."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class SyncOutcome:
    outcome: QueryOutput
    document: bytes | None = None  # the stored result document when handed off: no need to read it back


@dataclass
class LaneStats:
    """What the lane did since it was made (for tests and operators)."""

    handed_off: int = 0  # calls answered by the in-process handoff
    fell_back: int = 0  # calls answered by the workflow's result
    prefetched: int = 0  # queries started beside their workflow's start
    adopted: int = 0  # query activities that reported running here for a waiting call
    stopped: int = 0  # prefetched queries nobody took over


@dataclass
class _Call:
    handoff: asyncio.Future[SyncOutcome]
    adopted: asyncio.Future[None]
    prefetched: Prefetched | None = None
    taken: bool = field(default=False)  # the prefetched query was handed to its activity


class SyncLane:
    """The fast lane of one process: the API's requests call ``execute``; the query activities of the worker
    the process hosts call ``adopt`` and ``publish``; that worker serves the lane (``serving``) while it runs.
    One lane per app (``AppContext.sync_lane``), handed to the activities that report to it."""

    def __init__(self, enabled: bool = True, *, adoption_window: float = ADOPTION_WINDOW,
                 handoff_grace: float = HANDOFF_GRACE):
        self.enabled = enabled
        self.adoption_window, self.handoff_grace = adoption_window, handoff_grace
        self.stats = LaneStats()
        self._calls: dict[str, _Call] = {}
        self._start_query: Callable[[QueryInput], Prefetched] | None = None

    # --- the embedded worker --------------------------------------------------------------------------

    @contextlib.contextmanager
    def serving(self, start_query: Callable[[QueryInput], Prefetched]) -> Iterator[None]:
        """While the worker of this process runs: the lane is active and starts each call's query with
        ``start_query`` (the worker's activities, which report to this lane)."""
        self._start_query = start_query
        try:
            yield
        finally:
            self._start_query = None

    @property
    def active(self) -> bool:
        """Whether calls take the fast lane now: switched on and served by a worker."""
        return self.enabled and self._start_query is not None

    @property
    def idle(self) -> bool:
        """No call waits and no prefetched query is left running."""
        return not self._calls

    # --- the query activity ---------------------------------------------------------------------------

    def adopt(self, job_id: str) -> Prefetched | None:
        """The query activity of ``job_id`` runs here: the call stops waiting for a report, and the query
        started for it, if any, is handed over (once)."""
        call = self._calls.get(job_id)
        if call is None:
            return None
        self.stats.adopted += 1
        _resolve(call.adopted, None)
        if call.taken or call.prefetched is None:
            return None
        call.taken = True
        return call.prefetched

    def publish(self, job_id: str, outcome: QueryOutput, document: bytes | None = None) -> None:
        """The query activity's outcome, stored and recorded; a job no call of this process waits for is
        ignored (the workflow's result carries it)."""
        call = self._calls.get(job_id)
        if call is not None:
            _resolve(call.handoff, SyncOutcome(outcome, document))

    # --- the request ----------------------------------------------------------------------------------

    async def execute(self, inp: QueryInput, start: Callable[[], Awaitable[WorkflowHandle[Any, Any]]],
                      deadline: float) -> SyncOutcome:
        """Starts the execution's workflow (``start``) and returns its outcome by ``deadline`` (epoch seconds);
        past it the workflow is cancelled and the outcome is ``TIMED_OUT``. Failures of the workflow come back
        as failed outcomes (their ApplicationError's type and message)."""
        if not self.active:
            return await self._through_temporal(await start(), deadline)
        call = self._expect(inp)
        try:
            handle = await start()
            return await self._answer(inp.job_id, call, handle, deadline)
        finally:
            self._forget(inp.job_id)

    def _expect(self, inp: QueryInput) -> _Call:
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), loop.create_future())
        self._calls[inp.job_id] = call
        if self._start_query is not None:
            call.prefetched = self._start_query(inp)
            self.stats.prefetched += 1
        return call

    async def _answer(self, job_id: str, call: _Call, handle: WorkflowHandle[Any, Any],
                      deadline: float) -> SyncOutcome:
        def left() -> float:
            return max(deadline - time.time(), 0.0)

        if not call.adopted.done():
            either: set[asyncio.Future[Any]] = {call.handoff, call.adopted}
            await asyncio.wait(either, timeout=min(self.adoption_window, left()))
        if call.adopted.done():  # it runs here: the handoff comes, or the result is read after the grace
            if not call.handoff.done():
                await asyncio.wait({call.handoff}, timeout=min(self.handoff_grace, left()))
        else:  # it runs elsewhere (or too late to use what was started here): the result comes through Temporal
            self._stop_prefetched(call)
        if call.handoff.done():
            self.stats.handed_off += 1
            return call.handoff.result()
        return await self._through_temporal(handle, deadline, call.handoff)

    async def _through_temporal(self, handle: WorkflowHandle[Any, Any], deadline: float,
                                handoff: asyncio.Future[SyncOutcome] | None = None) -> SyncOutcome:
        """The workflow's result (and a handoff that may still come first)."""
        result = asyncio.ensure_future(handle.result())
        waiting: set[asyncio.Future[Any]] = {result} if handoff is None else {result, handoff}
        try:
            done, _ = await asyncio.wait(waiting, timeout=max(deadline - time.time(), 0.0),
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                with contextlib.suppress(RPCError):  # e.g. no worker picked it up: cancel so nothing runs later
                    await handle.cancel()
                return SyncOutcome(TIMED_OUT)
            if handoff is not None and handoff.done():
                self.stats.handed_off += 1
                return handoff.result()
            self.stats.fell_back += 1
            try:
                return SyncOutcome(result.result())
            except WorkflowFailureError as e:
                return SyncOutcome(QueryOutput(status=QueryStatus.FAILED, error=getattr(e.cause, "message", None),
                                               error_type=getattr(e.cause, "type", None)))
        finally:
            if not result.done():
                result.cancel()

    def _stop_prefetched(self, call: _Call) -> None:
        if call.prefetched is not None and not call.taken:
            call.taken = True
            call.prefetched.stop()
            self.stats.stopped += 1

    def _forget(self, job_id: str) -> None:
        """The call is over: a query started for it and not taken over is stopped."""
        call = self._calls.pop(job_id, None)
        if call is None:
            return
        self._stop_prefetched(call)
        for future in (call.handoff, call.adopted):
            if not future.done():
                future.cancel()


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    """Sets a waiting call's future from the activity, on the call's loop (the activity may run on another
    loop or thread, e.g. a worker in a test)."""
    def settle() -> None:
        if not future.done():
            future.set_result(value)

    if future.done():
        return
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        future.set_result(value)
    else:
        loop.call_soon_threadsafe(settle)
