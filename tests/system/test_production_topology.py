"""The production topology of docker-compose.yml on one machine, without Docker: every part its own process.

PostgreSQL (the session's ``pg_url`` database) is the metadata store, moto's S3 server the artifact store (a
fresh bucket), a Temporal dev server started here is given its search attributes by ``dataapi temporal setup``
(the migrate step, on a bare server), then a thin ``dataapi api`` and two ``dataapi worker`` processes for each
of the queries, jobs and callbacks queues, all with the same environment and one shared DuckDB data folder.
Over real HTTP: a login, sync queries, async queries with signed callbacks to an HTTPS receiver, Jobs API jobs
with uploads whose outputs stream from S3; then one worker of each queue is SIGKILLed in the middle of a
second batch, and every job of that batch still completes, every callback is delivered. Ctrl-C stops it all.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections import Counter

import boto3
import httpx
import orjson
import pytest
from standardwebhooks import Webhook
from temporalio.api.enums.v1 import DescribeTaskQueueMode, PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from cli.demo import REPOSITORY
from cli.dev import wait_for_temporal
from dataapi import temporal
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.db import make_engine, session_scope
from tests.support.processes import CSV, DATAAPI, alive, api_ready, bearer, create_tenant, until
from tests.support.s3 import CREDENTIALS, new_bucket

QUEUES = ("queries", "jobs", "callbacks")

pytestmark = pytest.mark.slow


# --- Temporal helpers ------------------------------------------------------------------------------------

async def pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    """Identities polling a task queue, over all its partitions (the legacy mode only sees the root partition,
    so a worker whose long polls sit on another partition stays invisible for up to a minute)."""
    r = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace="default", task_queue=TaskQueue(name=queue), task_queue_types=[kind], report_pollers=True,
        api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
        versions=TaskQueueVersionSelection(unversioned=True)))
    return {p.identity for v in r.versions_info.values() for t in v.types_info.values() for p in t.pollers}


async def started_on(client: Client, job_ids: list[str]) -> dict[str, str]:
    """Workflow id -> identity of the worker running its activity, for activities in the STARTED state."""
    out = {}
    for job_id in job_ids:
        desc = await client.get_workflow_handle(job_id).describe()
        for a in desc.raw_description.pending_activities:
            if a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                out[job_id] = a.last_worker_identity
    return out


async def final_attempt(client: Client, job_id: str) -> int:
    """The attempt that finished the workflow's activity (started events are written when an attempt ends)."""
    attempts = [e.activity_task_started_event_attributes.attempt
                async for e in client.get_workflow_handle(job_id).fetch_history_events()
                if e.HasField("activity_task_started_event_attributes")]
    return max(attempts)


def zip_entries(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return {name: z.read(name) for name in z.namelist()}


# --- the test --------------------------------------------------------------------------------------------

async def test_production_topology_survives_killed_workers(topology, pg_url, s3_endpoint, pki,
                                                           receiver):
    timings: dict[str, float] = {}
    t0 = mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name], mark = round(now - mark, 1), now

    topo = topology
    bucket = new_bucket(s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id=CREDENTIALS["access_key"], aws_secret_access_key=CREDENTIALS["secret_key"])
    settings = topo.configure(
        pg_url, pki, DATAAPI_ARTIFACT_STORE=f"s3://{bucket}/artifacts?endpoint={s3_endpoint}&region=us-east-1",
        AWS_ACCESS_KEY_ID=CREDENTIALS["access_key"], AWS_SECRET_ACCESS_KEY=CREDENTIALS["secret_key"],
        DATAAPI_API_QUERY_WORKER="false")
    secret_key, data_dir = settings.secret_key, settings.data_dir

    # Temporal, bare: dev.py's command without its --search-attribute flags; the migrate step registers them.
    topo.start_temporal(settings, bare=True)  # its file: var/temporal/temporal.db
    tenant = create_tenant(settings, topo.root)  # meanwhile: the tenant, before the API and workers exist
    await wait_for_temporal(settings)
    lap("temporal + tenant")
    setup = topo.run("temporal", "setup")
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.splitlines() == ["search attributes added: " + ", ".join(sorted(a.name for a in
                                                                                    temporal.SEARCH_ATTRIBUTES)),
                                         "prune schedule dataapi-prune created"]
    lap("dataapi temporal setup")

    api = topo.spawn("api", [str(DATAAPI), "api"])
    for queue in QUEUES:
        for i in (1, 2):
            topo.spawn(f"worker-{queue}-{i}", [str(DATAAPI), "worker", "--queues", queue])
    client = await temporal.connect(settings)

    async with httpx.AsyncClient(base_url=topo.base_url, timeout=30) as http:
        await until(lambda: api_ready(http), 60, "API /readyz 200", topo)

        # Each queue is polled by exactly its own two workers; the thin API polls nothing.
        async def all_polling():
            for queue in QUEUES:
                expected = {p.identity for p in topo.workers(queue)}
                for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
                    found = await pollers(client, f"dataapi-{queue}", kind)
                    if found != expected:
                        assert found <= expected, f"unexpected pollers of {queue}: {found - expected}"
                        return False
            return True

        await until(all_polling, 60, "two pollers on each task queue", topo)
        assert api.identity not in set().union(*[await pollers(client, f"dataapi-{q}",
                                                               TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
                                                 for q in QUEUES])
        lap("api + 6 workers ready")

        # Login, then sync queries (on the queries workers: the API hosts no worker).
        r = await http.post("/api/v1/auth/api-key", json=tenant.login_body())
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = await http.post("/api/v1/data-api/default/vendas-por-regiao/execute", headers=bearer(token),
                            json={"parameter_values": {"data_inicio": "2026-01-01"}})
        assert r.status_code == 200, r.text
        assert [row["regiao"] for row in r.json()["rows"]] == ["Centro-Oeste", "Nordeste", "Norte", "Sudeste", "Sul"]
        r = await http.post("/api/v1/data-api/default/amostra/execute", headers=bearer(token), json={})
        assert r.status_code == 200, r.text
        sample = r.json()
        assert len(sample["rows"]) == sample["row_count"] == 200 and sample["truncated"] is True
        assert [row["id"] for row in sample["rows"]] == list(range(1, 201))
        lap("login + 2 sync queries")

        hook = f"https://localhost:{receiver.port}/hook"

        async def submit_async(endpoint: str, params: dict) -> dict:
            r = await http.post(f"/api/v1/data-api/default/{endpoint}/execute", headers=bearer(token),
                                json={"parameter_values": params, "callback_url": hook})
            assert r.status_code == 202, r.text
            return r.json()

        async def submit_job(repository: str, params: dict) -> str:
            r = await http.post("/api/v1/job/execute", headers=tenant.jobs_headers(repository),
                                files={"file": ("vendas.csv", CSV, "text/csv")}, data={"params": json.dumps(params)})
            assert r.status_code == 201, r.text
            return r.json()["job_id"]

        async def jobs_done(polling_urls: list[str], within: float) -> list[dict]:
            async def done():
                found = []
                for url in polling_urls:
                    job = (await http.get(url, headers=bearer(token))).json()
                    if job["status"] == "processing" or job["callback"]["status"] == "pending":
                        return None
                    found.append(job)
                return found

            return await until(done, within, "async jobs finished and called back", topo)

        async def repo_jobs_done(job_ids: list[str], within: float) -> dict[str, httpx.Response]:
            async def done():
                found = {}
                for job_id in job_ids:
                    r = await http.get(f"/api/v1/job/{job_id}/result", headers=tenant.jobs_headers())
                    if r.status_code == 202:
                        return None
                    found[job_id] = r
                return found

            return await until(done, within, "Jobs API jobs finished", topo)

        # Async queries with callbacks and Jobs API jobs with uploads, all at once.
        months = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
        accepted = [await submit_async("relatorio-mensal", {"mes": m}) for m in months]
        job_ids = [await submit_job(REPOSITORY["id"], {"a": i, "b": 1}) for i in range(4)]
        queries = await jobs_done([a["polling_url"] for a in accepted], 60)
        results = await repo_jobs_done(job_ids, 60)
        lap("batch 1: 6 async queries + 4 jobs")

        assert [q["status"] for q in queries] == ["completed"] * 6, queries
        assert all(q["result"]["row_count"] > 0 and q["callback"]["status"] == "delivered" for q in queries)
        engine = make_engine(pg_url)
        with session_scope(engine) as s:
            box = webhook_secrets.SecretBox(secret_key.encode())
            webhook_secret = webhook_secrets.current_secret(s, box, tenant.company_id)
        engine.dispose()
        by_job = {q["job_id"]: q for q in queries}
        batch1 = [req for req in receiver.requests if orjson.loads(req.body)["job_id"] in by_job]
        assert webhook_secret == tenant.webhook_secret
        assert len(batch1) == len(receiver.requests) == 6, "one delivery per job"
        for req in batch1:
            headers = {k: v for k, v in req.headers.items() if k.startswith("webhook-")}
            Webhook(webhook_secret).verify(req.body, headers)  # raises on a bad signature
            sent = orjson.loads(req.body)
            job = by_job[sent["job_id"]]
            assert req.path == "/hook" and headers["webhook-id"] == job["callback"]["webhook_id"]
            assert sent == {k: v for k, v in job.items() if k != "callback"}
        for q in queries:
            s3.head_object(Bucket=bucket, Key=f"artifacts/results/{tenant.slug}/{q['job_id']}.json")

        for i, job_id in enumerate(job_ids):
            r = results[job_id]
            assert r.status_code == 200 and r.json()["output"]["value"] == (i + 1) * 20, r.text
            output = await http.get(f"/api/v1/job/{job_id}/output", headers=tenant.jobs_headers())
            assert output.status_code == 200 and output.headers["content-type"] == "application/zip"
            summary = zip_entries(output.content)["summary.csv"].decode().splitlines()
            assert summary[1] == f"{i},1,Hyperparam_Example,1,3"
            head = s3.head_object(Bucket=bucket, Key=f"artifacts/jobs/{tenant.slug}/{job_id}/output.zip")
            assert head["ContentLength"] == len(output.content)
        lap("batch 1 checks (downloads from S3)")

        # Batch 2: work that takes seconds; one worker of each queue is SIGKILLed while it runs.
        accepted2 = [await submit_async("pesado", {}) for _ in range(4)]
        heavy_ids = [a["job_id"] for a in accepted2]
        sleepy_ids = [await submit_job("dorme", {"sleep": 2}) for _ in range(4)]

        async def all_started():
            running = {**await started_on(client, heavy_ids), **await started_on(client, sleepy_ids)}
            return running if len(running) == 8 else None

        await until(all_started, 20, "every batch-2 activity running", topo, step=0.05)
        running = {**await started_on(client, heavy_ids), **await started_on(client, sleepy_ids)}
        victims = {}
        for queue, ids in (("queries", heavy_ids), ("jobs", sleepy_ids)):
            load = Counter(running[i] for i in ids if i in running)
            victims[queue] = next(p for p in topo.workers(queue) if p.identity == load.most_common(1)[0][0])
        victims["callbacks"] = topo.workers("callbacks")[0]
        for proc in victims.values():
            topo.kill(proc)
        interrupted = {q: [i for i in ids if running.get(i) == victims[q].identity]
                       for q, ids in (("queries", heavy_ids), ("jobs", sleepy_ids))}
        assert interrupted["queries"] and interrupted["jobs"]
        lap("batch 2 submitted, running, 3 workers killed")

        queries2 = await jobs_done([a["polling_url"] for a in accepted2], 60)
        results2 = await repo_jobs_done(sleepy_ids, 60)
        lap("batch 2 completed on the survivors")

        assert [q["status"] for q in queries2] == ["completed"] * 4, queries2
        assert all(q["result"]["rows"] == [{"n": 0}] for q in queries2)
        assert all(r.status_code == 200 and r.json() == {"slept": 2} for r in results2.values()), results2
        # The workflows close too (those cached by a killed worker after its sticky queue's 10 s timeout), and the
        # killed worker's activities were retried elsewhere after the heartbeat timeout.
        for job_id in heavy_ids + sleepy_ids:
            await asyncio.wait_for(client.get_workflow_handle(job_id).result(), 30)
        retried = {q: [i for i in ids if await final_attempt(client, i) > 1] for q, ids in interrupted.items()}
        assert retried["queries"] and retried["jobs"], (interrupted, retried)
        for job_id in retried["jobs"]:
            logs = zip_entries((await http.get(f"/api/v1/job/{job_id}/logs", headers=tenant.jobs_headers())).content)
            assert b"attempt 2: staging" in logs["platform.log"], logs["platform.log"]
            output = await http.get(f"/api/v1/job/{job_id}/output", headers=tenant.jobs_headers())
            assert zip_entries(output.content) == {"slept.txt": b"2"}

        # No callback lost: at least once, so one webhook-id per job (a retry repeats the id), all signed.
        by_job2 = {q["job_id"]: q for q in queries2}
        batch2 = [req for req in receiver.requests if orjson.loads(req.body)["job_id"] in by_job2]
        ids = {req.headers["webhook-id"] for req in batch2}
        assert ids == {q["callback"]["webhook_id"] for q in queries2} and len(ids) == 4
        for req in batch2:
            Webhook(webhook_secret).verify(req.body, {k: v for k, v in req.headers.items()
                                                      if k.startswith("webhook-")})
            assert orjson.loads(req.body)["status"] == "completed"
        lap("batch 2 checks")

    # Nothing went to local disk: artifacts are in the bucket, DuckDB data in the one shared folder.
    for var in (topo.root / "var").iterdir():
        assert not (var / "artifacts").exists() and not (var / "data").exists(), var
    assert not (topo.root / "artifacts").exists()
    assert (data_dir / tenant.slug).is_dir()

    # Ctrl-C: every process stops on its own, leaving nothing behind.
    codes = topo.interrupt_all()
    lap("SIGINT shutdown")
    survivors = {p.name for p in topo.procs if p not in victims.values()}
    assert set(codes) == survivors and set(codes.values()) == {0}, f"{codes}\n{topo.logs()}"
    assert topo.strays_gone() == [], f"processes left behind: {alive(topo.strays)}"
    timings["total"] = round(time.monotonic() - t0, 1)
    print(f"\nproduction topology timings (s): {timings}; exit statuses: {codes}")
