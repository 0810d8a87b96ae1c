"""The stack the fault tests break: real processes as in production (a file-backed Temporal dev server, the API
under uvicorn with its own query worker, one worker process for every queue), PostgreSQL as the metadata store,
callbacks to the HTTPS receiver. Faults come from outside, as an operator or an orchestrator would inject
them: a process SIGKILLed by pid and started again, PostgreSQL stopped by its cluster tools.

What every test checks after its fault (``Stack.assert_settled``): every job accepted reached a terminal
state and reads as completed, nothing of the tenant stays ``processing`` in the store, every workflow of the
tenant closed, each job was called back under one webhook-id (however many attempts), every signature checks.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
from sqlmodel import select
from standardwebhooks import Webhook
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus

from cli.dev import wait_for_temporal
from dataapi import temporal
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint
from dataapi.db import make_engine, session_scope
from dataapi.identity.service import get_company
from dataapi.models import Job, RepoJob
from dataapi.settings import Settings
from tests.support.processes import CSV, DATAAPI, HEAVY, Proc, Tenant, Topology, api_ready, bearer, create_tenant, until
from tests.support.receiver import Receiver

# A sync endpoint whose query takes seconds: a call can be caught in flight.
HEAVY_SYNC = {**HEAVY, "slug": "pesado-sync", "execution_mode": "sync"}
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("fault test figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@dataclass
class Stack:
    topo: Topology
    settings: Settings
    tenant: Tenant
    receiver: Receiver
    http: httpx.AsyncClient
    temporal: Client
    token: str = ""
    accepted: list[dict] = field(default_factory=list)  # async Data API jobs: the 202 bodies
    repo_jobs: list[str] = field(default_factory=list)  # Jobs API job ids

    @property
    def hook(self) -> str:
        return self.receiver.url("localhost")

    def proc(self, name: str) -> Proc:
        return self.topo.live(name)

    async def login(self) -> str:
        r = await self.http.post("/api/v1/auth/api-key", json=self.tenant.login_body())
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]
        return self.token

    async def execute(self, slug: str, params: dict | None = None, callback: bool = False) -> httpx.Response:
        body = {"parameter_values": params or {}} | ({"callback_url": self.hook} if callback else {})
        return await self.http.post(f"/api/v1/data-api/default/{slug}/execute", json=body,
                                    headers=bearer(self.token), timeout=90)

    async def submit_async(self, slug: str, params: dict | None = None) -> dict:
        r = await self.execute(slug, params, callback=True)
        assert r.status_code == 202, r.text
        self.accepted.append(r.json())
        return r.json()

    async def post_job(self, repository: str, params: dict) -> httpx.Response:
        return await self.http.post("/api/v1/job/execute", headers=self.tenant.jobs_headers(repository),
                                    files={"file": ("vendas.csv", CSV, "text/csv")},
                                    data={"params": json.dumps(params)})

    async def submit_job(self, repository: str, params: dict) -> str:
        r = await self.post_job(repository, params)
        assert r.status_code == 201, r.text
        self.repo_jobs.append(r.json()["job_id"])
        return r.json()["job_id"]

    async def put_jobs_in_flight(self) -> int:
        """The fault tests' load: 2 heavy async queries and 3 monthly ones (all with callbacks) and 2 Jobs API
        jobs sleeping 3 s, returned once the heavy queries and the jobs run on workers. How many are in flight."""
        heavy = [(await self.submit_async("pesado"))["job_id"] for _ in range(2)]
        for month in ("2026-01", "2026-02", "2026-03"):
            await self.submit_async("relatorio-mensal", {"mes": month})
        jobs = [await self.submit_job("dorme", {"sleep": 3}) for _ in range(2)]
        await until(lambda: self.running(heavy + jobs), 30, "heavy queries and jobs running", self.topo, step=0.1)
        return len(self.accepted) + len(self.repo_jobs)

    async def running(self, job_ids: list[str]) -> bool:
        """Every one of these workflows has its activity started on a worker."""
        for job_id in job_ids:
            desc = await self.temporal.get_workflow_handle(job_id).describe()
            if not any(a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                       for a in desc.raw_description.pending_activities):
                return False
        return True

    async def settled(self, within: float) -> tuple[list[dict], dict[str, httpx.Response]]:
        """Waits for every accepted job to finish and be called back; the async jobs and the Jobs API results."""
        async def done():
            jobs = []
            for a in self.accepted:
                job = (await self.http.get(a["polling_url"], headers=bearer(self.token))).json()
                if job["status"] == "processing" or job["callback"]["status"] == "pending":
                    return None
                jobs.append(job)
            results = {}
            for job_id in self.repo_jobs:
                r = await self.http.get(f"/api/v1/job/{job_id}/result", headers=self.tenant.jobs_headers())
                if r.status_code == 202:
                    return None
                results[job_id] = r
            return jobs, results

        return await until(done, within, "every job finished and called back", self.topo, step=0.5)

    async def assert_settled(self, within: float = 120) -> dict:
        """The pass criteria of a fault test (see the module docstring); returns a few counts for the figures."""
        jobs, results = await self.settled(within)
        assert [j["status"] for j in jobs] == ["completed"] * len(jobs), jobs
        assert all(j["result"]["row_count"] >= 1 and j["callback"]["status"] == "delivered" for j in jobs), jobs
        for job_id, r in results.items():
            assert r.status_code == 200 and r.json(), (job_id, r.status_code, r.text)

        # The store: nothing of the tenant stays processing (also jobs whose submission was refused).
        engine = make_engine(self.settings.resolved_database_url)
        try:
            with session_scope(engine) as s:
                company_id = get_company(s, self.tenant.slug).id
                stuck = [(j.id, j.mode) for j in s.exec(select(Job).where(Job.company_id == company_id,
                                                                            Job.status == "processing"))]
                stuck += [(j.id, "repo") for j in s.exec(select(RepoJob).where(RepoJob.company_id == company_id,
                                                                                 RepoJob.status == "processing"))]
        finally:
            engine.dispose()
        assert stuck == [], f"jobs left processing: {stuck}"

        # Temporal: every workflow of the tenant closed (sync executions caught by the fault included: a running
        # one has no attributes yet, they are set as its query ends, so every running QueryWorkflow counts).
        query = f'DataApiCompany="{self.tenant.slug}" OR (WorkflowType="QueryWorkflow" AND ExecutionStatus="Running")'

        async def all_closed():
            open_ = [w.id async for w in self.temporal.list_workflows(query)
                     if w.status == WorkflowExecutionStatus.RUNNING]
            return not open_

        await until(all_closed, 60, "every workflow of the tenant closed", self.topo, step=1)

        # Callbacks: one webhook-id per job whatever the attempts, all signed with the company's secret.
        by_job = {j["job_id"]: j for j in jobs}
        posts = [r for r in self.receiver.requests if orjson.loads(r.body)["job_id"] in by_job]
        ids: dict[str, set[str]] = {}
        for r in posts:
            Webhook(self.tenant.webhook_secret).verify(r.body, {k: v for k, v in r.headers.items()
                                                                if k.startswith("webhook-")})
            ids.setdefault(orjson.loads(r.body)["job_id"], set()).add(r.headers["webhook-id"])
        assert {job_id: {j["callback"]["webhook_id"]} for job_id, j in by_job.items()} == ids
        return {"async jobs": len(jobs), "Jobs API jobs": len(results), "callback POSTs": len(posts)}

    def assert_still_running(self, *names: str) -> None:
        """These processes were never restarted: one process each, alive, started once."""
        for name in names:
            procs = [p for p in self.topo.procs if p.name == name]
            assert len(procs) == 1 and procs[0].popen.poll() is None, f"{name} exited or was restarted"


@pytest.fixture
async def stack(topology, pg_url, pki, receiver):
    topo = topology
    settings = topo.configure(pg_url, pki)
    topo.start_temporal(settings)  # file-backed: var/temporal/temporal.db
    tenant = create_tenant(settings, topo.root)
    engine = make_engine(pg_url)
    with session_scope(engine) as s:
        upsert_endpoint(s, get_company(s, tenant.slug), parse_definition(HEAVY_SYNC, 10_000, 100_000))
    engine.dispose()
    await wait_for_temporal(settings)
    topo.spawn("api", [str(DATAAPI), "api"])
    topo.spawn("worker", [str(DATAAPI), "worker"])
    client = await temporal.connect(settings)
    async with httpx.AsyncClient(base_url=topo.base_url, timeout=30) as http:
        await until(lambda: api_ready(http), 60, "API /readyz 200", topo)
        s = Stack(topo, settings, tenant, receiver, http, client)
        await s.login()
        r = await s.execute("vendas-por-regiao", {"data_inicio": "2026-01-01"})  # the worker answers
        assert r.status_code == 200, r.text
        yield s


class Clock:
    """Seconds since the fault, for the figures."""

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.start, 1)


async def timed(coro) -> tuple[float, object]:
    """(seconds, outcome): the response, or the transport error a client would see."""
    t = time.monotonic()
    try:
        out = await coro
    except httpx.TransportError as e:
        out = e
    return round(time.monotonic() - t, 1), out


def status_of(outcome) -> str:
    return str(outcome.status_code) if isinstance(outcome, httpx.Response) else type(outcome).__name__


async def gather(**calls) -> dict[str, tuple[float, object]]:
    names = list(calls)
    done = await asyncio.gather(*(timed(c) for c in calls.values()))
    return dict(zip(names, done, strict=True))
