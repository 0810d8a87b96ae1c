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
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import orjson
import pytest
import yaml
from standardwebhooks import Webhook
from temporalio.api.enums.v1 import DescribeTaskQueueMode, PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.duck import CompanyDatabases
from dataapi import callbacks, identity, temporal
from dataapi.db import make_engine, session_scope
from dataapi.demo import HERE as DEMO
from dataapi.demo import REPOSITORY, endpoint_file, write_sales_csv
from dataapi.dev import temporal_command, wait_for_temporal
from dataapi.endpoints import parse_definition, upsert_endpoint
from dataapi.jobs import upsert_repository
from dataapi.secrets import new_keyset
from dataapi.settings import Settings
from tests.conftest import unique_slug
from tests.test_dev_stack import alive, descendants, free_port
from tests.test_s3store import CREDENTIALS, _new_bucket, s3_endpoint  # noqa: F401 - s3_endpoint is a fixture

DATAAPI = Path(sys.executable).parent / "dataapi"
QUEUES = ("queries", "jobs", "callbacks")
HOSTNAME = socket.gethostname()
CSV = b"regiao,valor\nSul,10\nNorte,20\nSul,5\n"

# Several seconds of DuckDB work when a few run at once on two cores; no parameters, one row back.
HEAVY = {"namespace": "default", "slug": "pesado", "execution_mode": "async",
         "sql": "SELECT count(*) AS n FROM range(9000) a, range(9000) b WHERE a.range * b.range = -1"}
SAMPLE = {"namespace": "default", "slug": "amostra", "execution_mode": "sync", "max_rows": 200,
          "sql": "SELECT id, regiao, produto, valor FROM vendas ORDER BY id"}
SLEEPY = {"id": "dorme", "name": "Dorme", "runner": "python", "default_params": {"sleep": 2},
          "code": {"files": {"main.py": "import json, pathlib, time\n"
                                        "p = json.loads(pathlib.Path('params.json').read_text())\n"
                                        "time.sleep(p['sleep'])\n"
                                        "pathlib.Path('output').mkdir(exist_ok=True)\n"
                                        "pathlib.Path('output/slept.txt').write_text(str(p['sleep']))\n"
                                        "pathlib.Path('result.json').write_text(json.dumps({'slept': p['sleep']}))\n"},
                   "entry_point": "main.py"}}

pytestmark = pytest.mark.slow


# --- the tenant, created with the project's functions before any process starts ---------------------------

@dataclass
class Tenant:
    slug: str
    company_id: int
    key_id: str
    secret: str
    webhook_secret: str

    def login_body(self) -> dict:
        return {"company_slug": self.slug, "api_key": self.key_id, "api_secret": self.secret}

    def jobs_headers(self, repository: str | None = None) -> dict:
        h = {"username": "erp", "organization_id": self.slug, "application_id": "erp-app", "client_id": "erp-client",
             "x-api-key": f"{self.key_id}.{self.secret}"}
        return {**h, "repository_id": repository} if repository else h


def create_tenant(settings: Settings, root: Path) -> Tenant:
    """What an operator does with the CLI: company, integration user, key, endpoints, repositories, data."""
    from activities.runners import validate_code

    engine = make_engine(settings.resolved_database_url)
    slug = unique_slug("prod")
    hasher = identity.SecretHasher(settings.secret_key.encode())
    try:
        with session_scope(engine) as s:
            company = identity.create_company(s, slug, "Produção Ltda.")
            user = identity.create_user(s, company, "erp", ["DataAPIConsumer", "JobsAPIConsumer"])
            key, secret = identity.create_api_key(s, hasher, company, user)
            for d in [*yaml.safe_load(endpoint_file().read_text())["endpoints"], HEAVY, SAMPLE]:
                upsert_endpoint(s, company, parse_definition(d, settings.default_max_rows, settings.max_rows_cap))
            demo = {"files": {"main.py": (DEMO / "repository" / "main.py").read_text()}, "entry_point": "main.py"}
            upsert_repository(s, company.id, {**REPOSITORY, "code": demo}, validate_code)
            upsert_repository(s, company.id, SLEEPY, validate_code)
            # The operator reads the webhook secret to configure the receiver (`dataapi webhooks secret`).
            webhook_secret = callbacks.current_secret(s, callbacks.SecretBox(settings.secret_key.encode()), company.id)
            tenant = Tenant(slug, company.id, key.key_id, secret, webhook_secret)
    finally:
        engine.dispose()
    CompanyDatabases(settings.resolved_data_dir).load_file(slug, "vendas", write_sales_csv(root / "vendas.csv"))
    return tenant


# --- the processes ---------------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def identity(self) -> str:  # the Temporal SDK's default worker identity
        return f"{self.pid}@{HOSTNAME}"

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.exists() else []
        return f"--- {self.name} (pid {self.pid}, exit {self.popen.poll()}) ---\n" + "\n".join(text)


@dataclass
class Topology:
    root: Path
    env: dict
    procs: list[Proc] = field(default_factory=list)
    strays: dict[int, str] = field(default_factory=dict)  # descendants seen along the way, by pid and identity

    def spawn(self, name: str, cmd: list[str], **env) -> Proc:
        var = self.root / "var" / name
        var.mkdir(parents=True, exist_ok=True)
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(cmd, cwd=var, env={**self.env, "DATAAPI_VAR_DIR": str(var), **env},
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess:
        var = self.root / "var" / "cli"
        var.mkdir(parents=True, exist_ok=True)
        return subprocess.run([str(DATAAPI), *args], cwd=var, env={**self.env, "DATAAPI_VAR_DIR": str(var)},
                              capture_output=True, text=True, timeout=60)

    def workers(self, queue: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(f"worker-{queue}-")]

    def check_alive(self) -> None:
        dead = [p for p in self.procs if p.popen.poll() is not None and p.popen.returncode != -signal.SIGKILL]
        assert not dead, "a process exited:\n" + "\n".join(p.tail() for p in dead)

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def remember_children(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                self.strays.update(descendants(p.pid))

    def kill(self, proc: Proc) -> None:
        self.strays.update(descendants(proc.pid))  # a job's process dies with its worker (PDEATHSIG)
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)

    def interrupt_all(self, within: float = 15.0) -> dict[str, int | None]:
        """Ctrl-C in the order of a rolling stop: the API, then the workers, then Temporal; their exit statuses
        (None: still running ``within`` seconds after its signal)."""
        self.remember_children()
        live = [p for p in self.procs if p.popen.poll() is None]
        stages = [[p for p in live if p.name == "api"], [p for p in live if p.name.startswith("worker-")],
                  [p for p in live if p.name == "temporal"]]
        codes = {}
        for stage in stages:
            for p in stage:
                p.popen.send_signal(signal.SIGINT)
            deadline = time.monotonic() + within
            for p in stage:
                try:
                    codes[p.name] = p.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    codes[p.name] = None
        return codes

    def strays_gone(self, within: float = 5.0) -> list[int]:
        """Waits for the descendants seen so far to be gone (a grandchild may take a moment); those left."""
        deadline = time.monotonic() + within
        while alive(self.strays) and time.monotonic() < deadline:
            time.sleep(0.1)
        return alive(self.strays)

    def cleanup(self) -> None:
        """Whatever is left (after a failure): stop it by pid."""
        for p in self.procs:
            if p.popen.poll() is None:
                self.strays.update(descendants(p.pid))
                p.popen.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.popen.wait(10)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()
        for pid in alive(self.strays):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def topology(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAAPI_", "AWS_"))}
    topo = Topology(tmp_path, env)
    yield topo
    topo.cleanup()


# --- HTTP and Temporal helpers ---------------------------------------------------------------------------

def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def until(predicate, within: float, what: str, topo: Topology, step: float = 0.2):
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        topo.check_alive()
        assert time.monotonic() < deadline, f"{what} not reached within {within}s\n{topo.logs()}"
        await asyncio.sleep(step)


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

async def test_production_topology_survives_killed_workers(topology, pg_url, s3_endpoint, pki,  # noqa: F811
                                                           receiver):
    timings: dict[str, float] = {}
    t0 = mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name], mark = round(now - mark, 1), now

    topo = topology
    bucket = _new_bucket(s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id=CREDENTIALS["access_key"], aws_secret_access_key=CREDENTIALS["secret_key"])
    secret_key = secrets.token_urlsafe(48)
    data_dir = topo.root / "data"
    temporal_port, api_port = free_port(), free_port()
    topo.env.update({
        "DATAAPI_DATABASE_URL": pg_url,
        "DATAAPI_ARTIFACT_STORE": f"s3://{bucket}/artifacts?endpoint={s3_endpoint}&region=us-east-1",
        "AWS_ACCESS_KEY_ID": CREDENTIALS["access_key"], "AWS_SECRET_ACCESS_KEY": CREDENTIALS["secret_key"],
        "DATAAPI_DATA_DIR": str(data_dir),
        "DATAAPI_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "DATAAPI_SECRET_KEY": secret_key, "DATAAPI_JWT_KEYSET": json.dumps(new_keyset()),
        "DATAAPI_API_HOST": "127.0.0.1", "DATAAPI_API_PORT": str(api_port), "DATAAPI_API_QUERY_WORKER": "false",
        "DATAAPI_CALLBACK_ALLOW_CIDRS": '["127.0.0.0/8","::1/128"]',
        "DATAAPI_CALLBACK_CA_BUNDLE": str(pki / "ca.pem"),
        "DATAAPI_CALLBACK_SCHEDULE_SECONDS": "[0,1,1,1,1]",
        "DATAAPI_QUERY_HEARTBEAT_SECONDS": "2", "DATAAPI_JOB_HEARTBEAT_SECONDS": "2",
        "DATAAPI_LOG_LEVEL": "INFO",
    })
    settings = Settings(var_dir=topo.root / "var" / "temporal", database_url=pg_url, data_dir=data_dir,
                        secret_key=secret_key, temporal_address=f"127.0.0.1:{temporal_port}",
                        temporal_ui_port=free_port())

    # Temporal, bare: dev.py's command without its --search-attribute flags; the migrate step registers them.
    flags = temporal.dev_server_flags()
    command = temporal_command(settings)
    assert command[-len(flags):] == flags
    topo.spawn("temporal", [*command[:-len(flags)], "--headless"])  # its file: var/temporal/temporal.db
    tenant = create_tenant(settings, topo.root)  # meanwhile: the tenant, before the API and workers exist
    await wait_for_temporal(settings)
    lap("temporal + tenant")
    setup = topo.run("temporal", "setup")
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.strip() == "search attributes added: " + ", ".join(sorted(a.name for a in
                                                                                  temporal.SEARCH_ATTRIBUTES))
    lap("dataapi temporal setup")

    api = topo.spawn("api", [str(DATAAPI), "api"])
    for queue in QUEUES:
        for i in (1, 2):
            topo.spawn(f"worker-{queue}-{i}", [str(DATAAPI), "worker", "--queues", queue])
    client = await temporal.connect(settings)
    base = f"http://127.0.0.1:{api_port}"

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        async def ready():
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await until(ready, 60, "API /readyz 200", topo)

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
            webhook_secret = callbacks.current_secret(s, callbacks.SecretBox(secret_key.encode()), tenant.company_id)
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
    assert (data_dir / tenant.slug).is_dir()

    # Ctrl-C: every process stops on its own, leaving nothing behind.
    codes = topo.interrupt_all()
    lap("SIGINT shutdown")
    survivors = {p.name for p in topo.procs if p not in victims.values()}
    assert set(codes) == survivors and set(codes.values()) == {0}, f"{codes}\n{topo.logs()}"
    assert topo.strays_gone() == [], f"processes left behind: {alive(topo.strays)}"
    timings["total"] = round(time.monotonic() - t0, 1)
    print(f"\nproduction topology timings (s): {timings}; exit statuses: {codes}")
