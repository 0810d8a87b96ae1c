"""The baselines beside DuckDB: a bare Starlette + DuckDB app, and the same made durable with Temporal's least.

Bare: one read-only DuckDB connection (its own copy of the data), a cursor per request in Starlette's thread
pool, the same SQL and the same JSON shape as our sync endpoints ({columns, rows, row_count, truncated}); no
authentication, no store, no Temporal. Decimals leave DuckDB as DOUBLE, as on our path, so neither side pays
for Python Decimal objects.

Durable (``--temporal ADDRESS``): every request starts a workflow eagerly (``BareQuery``) whose one local
activity runs the same ``Queries.run`` on a worker in this process and hands the answer to the request, as our
sync path does. No auth, store, job row, search attributes or execution timeout: it is Temporal's minimum
beside DuckDB on the same cores, so the distance from it to ours is our own code. ``POST /jobs/{name}`` is the
async shape: the same workflow, answered 202 at once; ``GET /jobs`` lists when each one's query finished.

    python -m bench.bare --db copy.duckdb --queries queries.json --port 8000 [--threads 2]
        [--temporal 127.0.0.1:7233 --namespace default]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import duckdb
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

_CONVERT = {"integer": int, "date": date.fromisoformat, "string": str}


class Queries:
    def __init__(self, con: duckdb.DuckDBPyConnection, queries: dict):
        self.con, self.queries = con, queries
        self._shapes: dict[str, tuple[str, list[str], list[dict]]] = {}  # name -> (SQL to run, names, columns)
        self._lock = threading.Lock()

    def run(self, name: str, values: dict) -> bytes:
        query = self.queries[name]
        params = {p["name"]: _CONVERT[p["type"]](values[p["name"]]) for p in query["parameters"]}
        cursor = self.con.cursor()
        try:
            sql, names, columns = self._shape(cursor, name, params)
            rows = [dict(zip(names, r, strict=True)) for r in cursor.execute(sql, params).fetchall()]
        finally:
            cursor.close()
        return orjson.dumps({"columns": columns, "rows": rows, "row_count": len(rows), "truncated": False})

    def _shape(self, cursor: duckdb.DuckDBPyConnection, name: str, params: dict) -> tuple[str, list, list]:
        """Worked out once per query: its column names and types, and the SQL casting decimals to DOUBLE."""
        with self._lock:
            if name in self._shapes:
                return self._shapes[name]
        sql = self.queries[name]["sql"]
        relation = cursor.sql(sql, params=params)
        names, types = relation.columns, [str(t) for t in relation.types]
        if any(t.startswith("DECIMAL") for t in types):
            casts = ", ".join(f"#{i}::DOUBLE" if t.startswith("DECIMAL") else f"#{i}"
                              for i, t in enumerate(types, 1))
            sql = f"SELECT {casts} FROM (\n{sql}\n)"  # noqa: S608 - our own benchmark SQL
        columns = [{"name": n, "type": t.split("(")[0].lower()} for n, t in zip(names, types, strict=True)]
        with self._lock:
            self._shapes[name] = (sql, names, columns)
        return sql, names, columns


@workflow.defn(name="BareQuery")
class BareQuery:
    """One local activity running the bare handler's query; one attempt, so a query that fails fails the
    workflow, as it fails the plain handler's request."""

    @workflow.run
    async def run(self, inp: list) -> int:
        return await workflow.execute_local_activity("bare_query", inp, start_to_close_timeout=timedelta(seconds=70),
                                                     retry_policy=RetryPolicy(maximum_attempts=1))


def create_app(queries: Queries, temporal: tuple[str, str] | None = None) -> Starlette:
    """``temporal``: (address, namespace) to run every query in a workflow there (the module's docstring)."""
    durable: dict = {}
    finished: dict[str, float] = {}  # async jobs: workflow id -> when its query finished (wall clock)

    async def execute(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in queries.queries:
            return Response(b'{"error":"no such query"}', 404, media_type="application/json")
        body = orjson.loads(await request.body() or b"{}")
        values = body.get("parameter_values") or {}
        if not durable:
            content = await run_in_threadpool(queries.run, name, values)
        else:
            workflow_id = uuid.uuid4().hex
            durable["handoff"][workflow_id] = handed = asyncio.get_running_loop().create_future()
            try:
                await durable["client"].start_workflow(BareQuery.run, [name, values], id=workflow_id,
                                                       task_queue=durable["queue"], request_eager_start=True)
                content = await asyncio.wait_for(handed, 70)
            finally:
                durable["handoff"].pop(workflow_id, None)
        return Response(content, media_type="application/json")

    async def submit(request: Request) -> Response:
        name = request.path_params["name"]
        if not durable or name not in queries.queries:
            return Response(b'{"error":"no such query"}', 404, media_type="application/json")
        values = orjson.loads(await request.body() or b"{}").get("parameter_values") or {}
        workflow_id = uuid.uuid4().hex
        await durable["client"].start_workflow(BareQuery.run, [name, values], id=workflow_id,
                                               task_queue=durable["queue"], request_eager_start=True)
        return Response(orjson.dumps({"job_id": workflow_id}), 202, media_type="application/json")

    async def jobs(_request: Request) -> Response:
        return Response(orjson.dumps(finished), media_type="application/json")

    async def health(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if temporal is None:
            yield
            return
        loop, handoff = asyncio.get_running_loop(), {}

        @activity.defn(name="bare_query")
        def bare_query(inp: list) -> int:
            workflow_id = activity.info().workflow_id
            waiting = handoff.get(workflow_id)

            def hand(how, value) -> None:
                if waiting is not None:
                    loop.call_soon_threadsafe(lambda: waiting.done() or how(waiting, value))

            try:
                content = queries.run(*inp)
            except Exception as e:  # the request fails now (a 500, as the plain handler's) instead of waiting
                hand(asyncio.Future.set_exception, e)
                raise
            finished[workflow_id] = time.time()
            hand(asyncio.Future.set_result, content)
            return len(content)

        client = await Client.connect(temporal[0], namespace=temporal[1])
        queue = f"bare-{uuid.uuid4().hex[:8]}"
        # As many queries at once as the plain handler's thread pool runs (anyio's default, 40); like our API's
        # embedded worker: unsandboxed, activations in turn on one thread of their own (deadlock detection on).
        with ThreadPoolExecutor(max_workers=40, thread_name_prefix="bare") as executor, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="bare-workflow") as workflow_executor:
            async with Worker(client, task_queue=queue, workflows=[BareQuery], activities=[bare_query],
                              activity_executor=executor, max_concurrent_local_activities=40,
                              workflow_runner=UnsandboxedWorkflowRunner(), workflow_task_executor=workflow_executor):
                durable.update(client=client, queue=queue, handoff=handoff)
                yield
                durable.clear()

    return Starlette(routes=[Route("/query/{name}", execute, methods=["POST"]),
                             Route("/jobs/{name}", submit, methods=["POST"]), Route("/jobs", jobs, methods=["GET"]),
                             Route("/healthz", health, methods=["GET"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--queries", required=True, help="JSON {name: {sql, parameters}}")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (as DATAAPI_QUERY_THREADS)")
    parser.add_argument("--memory-limit", default="1GB", help="as DATAAPI_QUERY_MEMORY_LIMIT")
    parser.add_argument("--temporal", metavar="ADDRESS", help="run every query in a workflow on this Temporal")
    parser.add_argument("--namespace", default="default", help="with --temporal")
    args = parser.parse_args()
    with open(args.queries, encoding="utf-8") as f:
        queries = json.load(f)
    con = duckdb.connect(args.db, read_only=True,
                         config={"threads": args.threads, "memory_limit": args.memory_limit})
    temporal = (args.temporal, args.namespace) if args.temporal else None
    uvicorn.run(create_app(Queries(con, queries), temporal), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
