"""The API process (uvicorn, with its embedded query worker) SIGKILLed while async jobs are in flight and being
polled and a sync call is running, then started again on the same port. Pollers see connection errors while
it is down, then carry on with the same token; every job completes, reads back and is called back once per
job; the sync execution the kill cut off still finishes (its workflow closes, its row is not left
processing). Nothing else is restarted."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.chaos.conftest import FIGURES, Clock, status_of, timed
from tests.support.processes import api_ready, bearer, until

pytestmark = pytest.mark.chaos


async def test_api_killed_and_restarted_with_jobs_in_flight(stack):
    s, topo = stack, stack.topo
    in_flight = await s.put_jobs_in_flight()
    stop = asyncio.Event()
    polled = asyncio.create_task(_poll_until(s, stop))
    sync_in_flight = asyncio.create_task(timed(s.execute("pesado-sync")))
    await asyncio.sleep(0.3)

    api = s.proc("api")
    topo.kill(api)
    clock = Clock()
    _, caught = await sync_in_flight
    assert isinstance(caught, httpx.TransportError), caught  # the connection died with the process
    _, down = await timed(s.http.get("/healthz"))
    assert isinstance(down, httpx.ConnectError), down
    await asyncio.sleep(2)  # pollers keep trying meanwhile

    topo.restart(api)
    await until(lambda: api_ready(s.http), 60, "API /readyz 200 after the restart", topo, step=0.1)
    ready_after = clock()
    r = await s.http.get(s.accepted[0]["polling_url"], headers=bearer(s.token))  # the token outlived the process
    assert r.status_code == 200, r.text
    counts = await s.assert_settled(within=120)
    settled_after = clock()
    stop.set()
    seen = await polled
    # Answers, or a transport error while no process answers (or as the kill cuts a poll); never an error status.
    assert {k for k in seen if k.isdigit()} == {"200"} and seen["ConnectError"], seen
    for job_id in s.repo_jobs:
        r = await s.http.get(f"/api/v1/job/{job_id}/output", headers=s.tenant.jobs_headers())
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    s.assert_still_running("temporal", "worker")

    FIGURES.append(
        f"API restart: {in_flight} jobs in flight ({counts}); sync call caught by the kill: {status_of(caught)}; "
        f"pollers saw {dict(seen)}; readyz 200 {ready_after}s after the kill (2 s of it waiting), all settled "
        f"{settled_after}s after it")


async def _poll_until(s, stop: asyncio.Event) -> Counter:
    """A client polling every async job until told to stop: what it saw, by status or transport error."""
    seen = Counter()
    while not stop.is_set():
        for accepted in s.accepted:
            try:
                r = await s.http.get(accepted["polling_url"], headers=bearer(s.token), timeout=5)
                seen[str(r.status_code)] += 1
            except httpx.TransportError as e:
                seen[type(e).__name__] += 1
        await asyncio.sleep(0.2)
    return seen
