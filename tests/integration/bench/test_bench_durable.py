"""The benchmark's "durable" baseline (bench/bare.py --temporal): the bare handler whose every request runs as
a workflow on the real dev server, answering exactly what the plain handler answers, and nothing runs
outside a workflow (an unknown query starts none); its async jobs are the same workflows, answered 202 and
listed with the moment their query finished."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import duckdb
import httpx
from temporalio.client import Client

from bench import data
from bench.bare import Queries, create_app
from bench.queries import BARE, FIRST_DAY


async def _answers(app, requests: list[tuple[str, dict]]) -> list[tuple[int, dict]]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        async def one(name: str, values: dict):
            r = await c.post(f"/query/{name}", json={"parameter_values": values})
            return r.status_code, r.json() if r.status_code != 500 else r.text
        return list(await asyncio.gather(*(one(n, v) for n, v in requests)))


async def _jobs(app, n: int) -> tuple[list[tuple[int, dict]], dict]:
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        accepted = [await c.post("/jobs/point", json={"parameter_values": {"id": i + 1}}) for i in range(n)]
        deadline = time.monotonic() + 20
        while True:
            finished = (await c.get("/jobs")).json()
            if len(finished) >= n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        return [(r.status_code, r.json()) for r in accepted], finished


async def test_every_durable_request_is_a_completed_workflow_with_the_plain_answer(tmp_path, temporal_env):
    parquet = data.write_sales(tmp_path / "sales.parquet", 2_000)
    con = duckdb.connect(str(tmp_path / "bench.duckdb"))
    con.execute("CREATE TABLE vendas AS SELECT * FROM read_parquet(?)", [str(parquet)])
    requests = [("point", {"id": i}) for i in (1, 7, 1999)] + [("medium", {"data_inicio": FIRST_DAY})] * 3
    address = temporal_env.client.service_client.config.target_host
    since = datetime.now(UTC).replace(microsecond=0)

    plain = await _answers(create_app(Queries(con, BARE)), requests)
    durable = await _answers(create_app(Queries(con, BARE), (address, "default")), requests)
    missing = await _answers(create_app(Queries(con, BARE), (address, "default")), [("nope", {})])
    submitted_at = time.time()
    jobs, finished = await _jobs(create_app(Queries(con, BARE), (address, "default")), 3)
    started = time.monotonic()  # a query that fails fails the request at once, as the plain handler's does
    failing = await _answers(create_app(Queries(con, BARE), (address, "default")), [("point", {})])
    failed_in = time.monotonic() - started

    assert [s for s, _ in plain] == [200] * len(requests)
    assert durable == plain  # the same rows, columns and counts, request by request
    assert plain[0][1]["rows"][0]["id"] == 1 and sum(r["vendas"] for r in plain[-1][1]["rows"]) == 2_000
    assert missing == [(404, {"error": "no such query"})]
    assert failing == [(500, "Internal Server Error")] and failed_in < 10
    assert [s for s, _ in jobs] == [202] * 3 and {j["job_id"] for _, j in jobs} == finished.keys()
    assert all(submitted_at <= t <= time.time() for t in finished.values())

    client = await Client.connect(address)  # the dev server's visibility is eventually consistent
    query = f"WorkflowType = 'BareQuery' AND StartTime >= '{since.isoformat()}'"
    deadline = time.monotonic() + 20
    while True:
        runs = [w async for w in client.list_workflows(query)]
        if len(runs) > len(requests) + len(jobs) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert sorted(w.status.name for w in runs) == ["COMPLETED"] * (len(requests) + len(jobs)) + ["FAILED"]
