"""PostgreSQL, the metadata store, stopped for 10 s under traffic, then started again. During the outage
readiness says 503 and every call that needs the store fails fast and cleanly: 503 in the contract's error
shape of its API (``{"code": "SERVICE_UNAVAILABLE", ...}`` or the Jobs API's ``{"error"}``), never a 500 or
a hang; liveness stays 200. Work in flight waits for the store instead of failing: a repository job and
callback attempts that reach the store during the outage record their outcome once it is back. Afterwards
the same processes serve again (the pool reconnects), with nothing restarted."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.chaos.conftest import FIGURES, Clock, gather, status_of
from tests.support.errors import error_body
from tests.support.processes import api_ready, bearer, postgresql_stopped, until
from tests.support.receiver import Reply

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = 10.0
UNAVAILABLE = {"code": "SERVICE_UNAVAILABLE", "message": "Service unavailable, retry later"}


async def test_postgresql_stopped_for_ten_seconds(stack):
    s, topo = stack, stack.topo
    # In flight when the store goes: repository jobs that finish during the outage, and async jobs whose
    # first callback POST fails, so that their next attempts (1 s later) fall into the outage.
    s.receiver.replies.extend([Reply(500), Reply(500)])
    jobs = [await s.submit_job("dorme", {"sleep": 3}) for _ in range(2)]
    for month in ("2026-01", "2026-02"):
        await s.submit_async("relatorio-mensal", {"mes": month})
    await until(lambda: s.running(jobs), 30, "repository jobs running", topo, step=0.1)
    await until(lambda: _received(s, 2), 30, "the first callback POSTs (answered 500)", topo, step=0.05)
    in_flight = len(s.accepted) + len(s.repo_jobs)
    job_headers = s.tenant.jobs_headers()
    probes = {
        "readyz": lambda: s.http.get("/readyz"),
        "healthz": lambda: s.http.get("/healthz"),
        "login": lambda: s.http.post("/api/v1/auth/api-key", json=s.tenant.login_body()),
        "sync": lambda: s.execute("vendas-por-regiao", {"data_inicio": "2026-01-01"}),
        "async": lambda: s.execute("relatorio-mensal", {"mes": "2026-05"}, callback=True),
        "poll": lambda: s.http.get(s.accepted[0]["polling_url"], headers=bearer(s.token)),
        "job_submit": lambda: s.post_job("dorme", {"sleep": 1}),
        "job_result": lambda: s.http.get(f"/api/v1/job/{jobs[0]}/result", headers=job_headers),
    }
    seen: dict[str, Counter] = {name: Counter() for name in probes}
    slowest = 0.0

    stopped = Clock()
    with postgresql_stopped():
        clock = Clock()
        while clock() < OUTAGE_SECONDS:
            for name, (took, r) in (await gather(**{n: p() for n, p in probes.items()})).items():
                seen[name][status_of(r)] += 1
                slowest = max(slowest, took)
                _check_outage_answer(name, r)
            await asyncio.sleep(0.5)
    down_for = stopped()  # from the stop command to the start command's return (the server accepts connections)

    clock = Clock()
    await until(lambda: api_ready(s.http), 30, "API /readyz 200 after PostgreSQL is back", topo, step=0.1)
    ready_after = clock()
    r = await s.http.post("/api/v1/auth/api-key", json=s.tenant.login_body())
    assert r.status_code == 200, r.text
    r = await s.execute("vendas-por-regiao", {"data_inicio": "2026-01-01"})
    assert r.status_code == 200, r.text
    serving_after = clock()
    counts = await s.assert_settled(within=120)
    settled_after = clock()
    s.assert_still_running("temporal", "api", "worker")

    statuses = {name: dict(c) for name, c in seen.items()}
    FIGURES.append(
        f"PostgreSQL down {down_for}s (stop to started): {in_flight} jobs in flight ({counts}); answers during "
        f"the outage {statuses}, slowest {slowest:.1f}s; after the start: readyz 200 in {ready_after}s, login and "
        f"sync 200 in {serving_after}s, all settled in {settled_after}s")


async def test_async_query_finishing_while_the_store_is_down_completes(stack):
    s = stack
    job_id = (await s.submit_async("pesado"))["job_id"]  # about two seconds of DuckDB work
    await until(lambda: s.running([job_id]), 30, "the query running", s.topo, step=0.05)
    with postgresql_stopped():
        await asyncio.sleep(OUTAGE_SECONDS)  # the query and its retries end meanwhile
    await s.assert_settled(within=60)


async def _received(s, n: int) -> bool:
    return len(s.receiver.requests) >= n


def _check_outage_answer(name: str, r) -> None:
    """What a caller sees while the store is down."""
    assert isinstance(r, httpx.Response), f"{name}: {r!r}"
    if name == "healthz":
        assert r.status_code == 200, r.text
        return
    if name == "readyz":
        assert r.status_code == 503 and r.json()["checks"]["store"].startswith("unavailable"), r.text
        return
    assert r.status_code == 503, f"{name}: {r.status_code} {r.text}"
    assert error_body(r) == ({"error": "Service unavailable, retry later"} if name.startswith("job_") else UNAVAILABLE)
