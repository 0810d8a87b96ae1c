"""The Temporal dev server (file-backed) SIGKILLed with jobs in flight, then started again on the same port and
file. Meanwhile the API answers cleanly: readiness 503, calls that need Temporal a 503 in the contract's error
shape within the client's retry time (no hang, no stack trace), polling reads the store. After the restart
the same API and worker processes carry on: sync calls succeed, every job completes, callbacks are delivered
once per job id (a retry straddling the outage keeps its webhook-id)."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.conftest import FIGURES, Clock, gather, status_of
from tests.support.errors import error_body
from tests.support.processes import api_ready, bearer, until
from tests.support.receiver import Reply

pytestmark = pytest.mark.chaos


async def test_temporal_killed_and_restarted_with_jobs_in_flight(stack):
    s, topo = stack, stack.topo
    # The first callback POST fails: its second attempt waits on a durable timer across the outage.
    s.receiver.replies.append(Reply(500))
    in_flight = await s.put_jobs_in_flight()
    sync_in_flight = asyncio.create_task(s.execute("pesado-sync"))
    await asyncio.sleep(0.5)

    server = s.proc("temporal")
    topo.kill(server)
    clock = Clock()
    outage = await gather(
        readyz=s.http.get("/readyz"),
        sync=s.execute("vendas-por-regiao", {"data_inicio": "2026-01-01"}),
        submit_job=s.post_job("dorme", {"sleep": 1}),
        poll=s.http.get(s.accepted[0]["polling_url"], headers=bearer(s.token)),
    )
    down_for = clock()
    (_, ready), (sync_s, sync), (job_s, job), (_, poll) = outage.values()
    assert ready.status_code == 503 and ready.json()["checks"]["temporal"].startswith("unavailable"), ready.text
    assert ready.json()["checks"]["store"] == "ok"
    assert sync.status_code == 503 and error_body(sync) == {"code": "SERVICE_UNAVAILABLE",
                                                       "message": "Service unavailable, retry later"}, sync.text
    # and its row is marked failed
    assert job.status_code == 503 and set(job.json()) == {"error", "request_id"}, job.text
    assert sync_s < 20 and job_s < 20
    assert poll.status_code == 200 and poll.json()["status"] in ("processing", "completed"), poll.text

    topo.restart(server)
    clock = Clock()
    await until(lambda: api_ready(s.http), 60, "API /readyz 200 after the restart", topo)
    ready_after = clock()

    async def sync_ok():
        r = await s.execute("vendas-por-regiao", {"data_inicio": "2026-01-01"})
        return r.status_code == 200

    await until(sync_ok, 60, "a sync call answers 200", topo, step=0.5)
    sync_after = clock()
    counts = await s.assert_settled(within=150)
    settled_after = clock()
    caught = await sync_in_flight
    assert caught.status_code in (200, 503), caught.text  # answered, or a clean 503 if it outlived the retries
    s.assert_still_running("api", "worker")

    FIGURES.append(
        f"Temporal restart: {in_flight} jobs in flight ({counts}); outage {down_for}s; during it readyz 503, "
        f"sync {status_of(sync)} in {sync_s}s, Jobs API submit "
        f"{status_of(job)} in {job_s}s, poll {status_of(poll)}; sync call caught by the kill: "
        f"{caught.status_code}; after restart: readyz 200 in {ready_after}s, sync 200 in {sync_after}s, "
        f"all settled in {settled_after}s")
