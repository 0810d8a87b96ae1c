"""The query activity: runs an endpoint's SQL on the company's DuckDB, stores the result in the artifact
store and records the job's outcome. Blocking work (DuckDB, the SQL store) runs on the executor.

In the API process the activities report to the process's sync lane (``dataapi.sync``): a sync query's local
activity adopts the query the request started for it and publishes its stored outcome to the request."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine
from temporalio import activity

from activities.blocking import BlockingActivities
from activities.duck.databases import CompanyDatabases
from activities.duck.errors import QueryFailed, QueryInterrupted, ResultTooLarge, SqlRefused
from activities.duck.serialise import QueryResult
from activities.query_defs import FINISH_FAILED, RUN_QUERY
from dataapi.data_api.jobs import finish_job
from dataapi.data_api.param_values import to_bind
from dataapi.data_api.params import ParamSpec
from dataapi.db import while_unavailable
from dataapi.fair_slots import FairSlots
from dataapi.logs import log_context
from dataapi.messages import FinishInput, QueryInput, QueryOutput
from dataapi.statuses import ExecutionMode, JobStatus, QueryStatus
from dataapi.storage.base import ArtifactStore
from dataapi.sync import SyncLane

log = logging.getLogger("dataapi.activities.query")
# An async query whose work is done waits this long (heartbeating) for an unreachable metadata store rather
# than failing and running again; a sync one has its deadline and a caller waiting, and an async one's local
# attempt leaves the wait to the regular activity, so neither waits.
STORE_WAIT_SECONDS = 120.0


def result_key(inp: QueryInput) -> str:
    return f"results/{inp.company_slug}/{inp.job_id}.json"


def rows_key(inp: QueryInput) -> str:
    """Every row of the result as Parquet (``inp.store_rows``), read by ``dataapi.data_api.results``."""
    return f"results/{inp.company_slug}/{inp.job_id}.parquet"


def _temporary_parquet() -> Path:
    fd, name = tempfile.mkstemp(prefix="dataapi-rows-", suffix=".parquet")
    os.close(fd)
    return Path(name)


def result_document(result: QueryResult) -> bytes:
    """The stored result: ``{columns, rows, row_count, truncated}``, rows spliced in without re-encoding."""
    return b"".join((
        b'{"columns":', orjson.dumps(result.columns), b',"rows":', result.rows_json,
        b',"row_count":', str(result.row_count).encode(), b',"truncated":',
        b"true" if result.truncated else b"false", b"}",
    ))


def _insert_fields(inp: QueryInput) -> dict:
    """The job row's fields, for executions (sync) whose row the API did not create up front."""
    return {"company_id": inp.company_id, "endpoint_id": inp.endpoint_id, "mode": inp.mode,
            "parameters": json.dumps(inp.params), "user_id": inp.user_id, "api_key_id": inp.api_key_id,
            "callback_url": inp.callback_url}


class RunningQuery:
    """A query running on the executor, and the way to stop it (thread-safe; a stop that comes before DuckDB
    started still stops it)."""

    def __init__(self, owner: QueryActivities, inp: QueryInput):
        self.owner, self.inp = owner, inp
        self.executed_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._lock = threading.Lock()
        self._interrupts: list[Callable[[], None]] = []
        self._stopped = False
        params = to_bind([ParamSpec.from_dict(p, stored=True) for p in inp.param_specs], inp.params)
        # The rows, written as DuckDB produces them, wait in a local file for the artifact store.
        self.rows_path = _temporary_parquet() if inp.store_rows else None
        store = (self.rows_path, inp.rows_limit or inp.max_rows) if self.rows_path is not None else None
        self.future = asyncio.ensure_future(owner._run(inp.company_slug, inp.sql, params, inp.max_rows,
                                                       self._on_start, store))

    def _on_start(self, interrupt: Callable[[], None]) -> None:
        with self._lock:
            self._interrupts.append(interrupt)
            stopped = self._stopped
        if stopped:
            interrupt()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            interrupts = list(self._interrupts)
        for interrupt in interrupts:
            interrupt()
        # QueryInterrupted, expected: retrieved so that asyncio does not report it
        self.future.add_done_callback(self._stopped_done)

    def _stopped_done(self, future: asyncio.Future) -> None:
        future.cancelled() or future.exception()
        self.discard()

    def discard(self) -> None:
        """Removes the local file of the rows (stored, or not wanted any more)."""
        if self.rows_path is not None:
            self.rows_path.unlink(missing_ok=True)


class QueryActivities(BlockingActivities):
    """``lane``: the sync lane of the process (the API's), whose calls these activities adopt and answer."""

    def __init__(self, engine: Engine, databases: CompanyDatabases, artifacts: ArtifactStore,
                 executor: ThreadPoolExecutor, query_slots: int, lane: SyncLane | None = None):
        self.engine, self.databases, self.artifacts, self.executor = engine, databases, artifacts, executor
        self.lane = lane
        # At most this many DuckDB queries at once (their working memory), however they were started, shared
        # fairly between companies (a freed slot goes to the waiting company running the fewest); the executor
        # keeps threads beyond them for storing results.
        self.slots = FairSlots(query_slots)

    async def _run(self, company_slug: str, *args: Any) -> QueryResult:
        async with self.slots.slot(company_slug):
            return await self._blocking(self.databases.run, company_slug, *args)

    def start_query(self, inp: QueryInput) -> RunningQuery:
        """Starts the query now. The sync lane calls this for a sync execution before starting its workflow,
        so DuckDB runs while Temporal records the start; the workflow's local activity then takes that query
        over instead of running it again (the query is a read-only SELECT)."""
        return RunningQuery(self, inp)

    def _take_over(self, inp: QueryInput) -> RunningQuery:
        """Reports to the lane that this sync query runs here; takes over the query started for it if that
        one is this execution's and was started by these activities; else starts a new one."""
        info = activity.info()
        adopted = None
        if self.lane is not None and inp.mode == ExecutionMode.SYNC and info.is_local and info.attempt == 1:
            adopted = self.lane.adopt(inp.job_id)
        if isinstance(adopted, RunningQuery) and adopted.owner is self and adopted.inp == inp:
            return adopted
        if adopted is not None:
            adopted.stop()
        return self.start_query(inp)

    def _handed_off(self, inp: QueryInput, out: QueryOutput, document: bytes | None = None) -> QueryOutput:
        """A sync outcome, stored and recorded, goes straight to a call of this process that waits for it."""
        if self.lane is not None and inp.mode == ExecutionMode.SYNC:
            self.lane.publish(inp.job_id, out, document)
        return out

    @activity.defn(name=RUN_QUERY)
    async def run_query(self, inp: QueryInput) -> QueryOutput:
        log_context.set({"job_id": inp.job_id, "company": inp.company_slug, "endpoint": inp.endpoint})
        query = self._take_over(inp)
        try:
            return await self._complete(inp, query)
        finally:
            query.discard()

    async def _complete(self, inp: QueryInput, query: RunningQuery) -> QueryOutput:
        running, executed_at = query.future, query.executed_at
        local = activity.info().is_local
        # An async query's local attempt gives up at its budget; the regular activity then runs it.
        give_up = time.time() + inp.local_budget_seconds if local and inp.mode == ExecutionMode.ASYNC else inp.deadline
        step = min(1.0, inp.heartbeat_seconds / 3)
        try:
            while not running.done():
                left = give_up - time.time() if give_up else step
                if left <= 0:  # the sync timeout or the budget: stop DuckDB here, within milliseconds of it
                    await self._interrupt(query)
                    if inp.mode == ExecutionMode.ASYNC:
                        return QueryOutput(status=QueryStatus.UNFINISHED)  # nothing recorded: the job goes on
                    return await self._failed(inp, executed_at, "ExecutionTimeout", "Execution timed out")
                await asyncio.wait({running}, timeout=min(step, left))
                if not local:
                    activity.heartbeat()
            result = running.result()
        except asyncio.CancelledError:
            await self._interrupt(query)  # nothing keeps running after a cancel
            raise
        except ResultTooLarge as e:  # the caller's to fix (narrower query): its message is the answer
            return await self._failed(inp, executed_at, "ResultTooLarge", e.message)
        except SqlRefused as e:
            return await self._failed(inp, executed_at, "SqlNotAllowed", e.message)
        except QueryFailed as e:  # DuckDB's class and message, paths scrubbed: the caller's to read and fix
            log.warning("job %s (%s): query failed: %s", inp.job_id, inp.endpoint, e)
            return await self._failed(inp, executed_at, "ExecutionError", e.message)
        except QueryInterrupted as e:
            log.warning("job %s (%s): query interrupted: %s", inp.job_id, inp.endpoint, e)
            return await self._failed(inp, executed_at, "ExecutionError", "Query execution failed")
        key = result_key(inp)
        document = await self._persist(inp, self._store, key, result, inp, query.rows_path)
        stored = result.stored_row_count is not None
        out = QueryOutput(status=QueryStatus.COMPLETED, result_key=key, row_count=result.row_count,
                          truncated=result.truncated, executed_at=executed_at,
                          rows_key=rows_key(inp) if stored else None, total_row_count=result.stored_row_count)
        return self._handed_off(inp, out, document)

    async def _persist(self, inp: QueryInput, fn: Callable[..., Any], *args: Any) -> Any:
        if activity.info().is_local:  # a caller waits (sync), or the regular activity can do it (async)
            return await self._blocking(fn, *args)
        return await while_unavailable(lambda: self._blocking(fn, *args), STORE_WAIT_SECONDS, activity.heartbeat)

    @staticmethod
    async def _interrupt(query: RunningQuery) -> None:
        query.stop()
        await asyncio.wait({query.future}, timeout=5)

    async def _failed(self, inp: QueryInput, executed_at: str, error_type: str, error: str) -> QueryOutput:
        await self._persist(inp, self._finish, inp, JobStatus.FAILED, {"error": error})
        return self._handed_off(inp, QueryOutput(status=QueryStatus.FAILED, executed_at=executed_at, error=error,
                                            error_type=error_type))

    def _store(self, key: str, result: QueryResult, inp: QueryInput, rows_path: Path | None) -> bytes:
        document = result_document(result)
        self.artifacts.put_bytes(key, document)
        fields: dict[str, Any] = {"result_key": key, "row_count": result.row_count, "truncated": result.truncated}
        if result.stored_row_count is not None and rows_path is not None:
            self.artifacts.put_file(rows_key(inp), rows_path)
            fields["rows_key"] = rows_key(inp)
            if inp.rows_limit:  # an export endpoint: its job body tells the total and links the next page
                fields |= {"total_row_count": result.stored_row_count, "rows_truncated": result.stored_truncated}
        self._finish(inp, JobStatus.COMPLETED, fields)
        return document

    def _finish(self, inp: QueryInput, status: JobStatus, fields: dict) -> None:
        with self.engine.begin() as conn:
            finish_job(conn, inp.job_id, status=status, insert=_insert_fields(inp), **fields)

    @activity.defn(name=FINISH_FAILED)
    async def finish_failed(self, inp: FinishInput) -> None:
        await self._blocking(self._finish, inp.query, JobStatus.FAILED, {"error": inp.error, **inp.extra})
