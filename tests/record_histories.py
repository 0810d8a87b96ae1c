"""Records the Temporal histories that tests/unit/workflows/test_replay.py replays:
``python -m tests.record_histories``.

Runs the real stack (a Temporal dev server, the API over ASGI, the query, callback and job workers, DuckDB, an
HTTPS receiver on localhost) through every path of every workflow worth keeping, and writes each closed
workflow's history to tests/histories/<name>.json. Re-record after a deliberate, versioned workflow change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from cli.dev import temporal_binary
from dataapi.db import make_engine, session_scope, upgrade
from dataapi.models import Job
from dataapi.retention import PruneInput
from dataapi.settings import Settings
from dataapi.temporal import SEARCH_ATTRIBUTES
from tests.support.data_api import SECOND_OF_WORK, SLOW_SQL, Tenant, bearer, execute
from tests.support.jobs_api import CSV, Org
from tests.support.receiver import Receiver, Reply, make_pki
from worker import build_callback_worker, build_job_worker, build_query_worker
from workflows.prune import PruneWorkflow

HISTORIES = Path(__file__).parent / "histories"
IDENTITY = "record-histories"  # instead of pid@hostname in every recorded event


class Recording:
    """The running stack and the helpers the scenarios share."""

    def __init__(self, client: Client, app, api: httpx.AsyncClient, receiver: Receiver):
        self.client, self.app, self.api, self.receiver = client, app, api, receiver
        self.ctx = app.state.ctx

    async def closed(self, workflow_id: str, within: float = 60.0) -> WorkflowHandle:
        handle = self.client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + within
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow {workflow_id} still running")
            await asyncio.sleep(0.1)
        return handle

    def only_job(self, tenant: Tenant) -> str:
        with session_scope(self.ctx.engine) as s:
            [job] = s.exec(select(Job).where(Job.company_id == tenant.company_id)).all()
            return job.id

    async def callback_of(self, token: str, polling_url: str, within: float = 30.0) -> str:
        """The delivery workflow of an async job, once it has ended."""
        deadline = time.monotonic() + within
        while True:
            callback = (await self.api.get(polling_url, headers=bearer(token))).json()["callback"]
            if callback["status"] != "pending":
                return (await self.closed(f"callback-{callback['webhook_id']}")).id
            if time.monotonic() > deadline:
                raise TimeoutError(f"callback of {polling_url} still pending")
            await asyncio.sleep(0.1)

    async def started(self, workflow_id: str, within: float = 30.0) -> None:
        """Waits until the workflow's activity is running on a worker."""
        handle = self.client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + within
        while not any(a.state == 2 for a in (await handle.describe()).raw_description.pending_activities):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the activity of {workflow_id} never started")
            await asyncio.sleep(0.1)

    def tenant(self) -> Tenant:
        return Tenant(self.app, self.api)

    @contextlib.contextmanager
    def settings(self, **update) -> Iterator[None]:
        """The API's settings changed for the executions submitted inside."""
        settings = self.ctx.settings
        self.ctx.settings = settings.model_copy(update=update)
        try:
            yield
        finally:
            self.ctx.settings = settings

    @property
    def hook(self) -> str:
        return self.receiver.url("localhost")


# --- the scenarios: each drives one path and returns the id of the workflow to keep -----------------------

async def query_sync_completed(rec: Recording) -> str:
    tenant = rec.tenant()
    r = await execute(rec.api, await tenant.token(), "default/vendas-por-regiao", {"data_inicio": "2026-01-01"})
    assert r.status_code == 200, r.text
    return rec.only_job(tenant)


async def query_sync_failed(rec: Recording) -> str:
    tenant = rec.tenant()
    tenant.endpoint(slug="quebra", sql="SELECT CAST($v AS INTEGER) AS n", parameters=[{"name": "v", "type": "string"}])
    r = await execute(rec.api, await tenant.token(), "default/quebra", {"v": "not a number"})
    assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR", r.text
    return rec.only_job(tenant)


async def query_sync_timed_out(rec: Recording) -> str:
    tenant = rec.tenant()
    tenant.endpoint(slug="lento", sql=SLOW_SQL)
    token = await tenant.token()
    with rec.settings(sync_timeout_seconds=1.5):
        r = await execute(rec.api, token, "default/lento")
    assert r.status_code == 408, r.text
    return rec.only_job(tenant)


async def _monthly_with_callback(rec: Recording, **settings) -> str:
    tenant = rec.tenant()
    token = await tenant.token()
    with rec.settings(**settings):
        r = await execute(rec.api, token, "default/relatorio-mensal", {"mes": "2026-03"}, callback_url=rec.hook)
    assert r.status_code == 202, r.text
    await rec.callback_of(token, r.json()["polling_url"])  # the child started and ended: no stray delivery later
    return r.json()["job_id"]


async def query_async_completed_callback(rec: Recording) -> str:
    """The regular activity alone: how every async query ran before the local attempt (and runs without a
    budget)."""
    return await _monthly_with_callback(rec, async_local_budget_seconds=0)


async def query_async_local_completed(rec: Recording) -> str:
    """A short async query: done by its local attempt, no regular activity."""
    return await _monthly_with_callback(rec)


async def query_async_local_outran(rec: Recording) -> str:
    """An async query longer than its local attempt's budget: stopped there, then run as a regular activity."""
    tenant = rec.tenant()
    tenant.endpoint(slug="segundo", sql=SECOND_OF_WORK, execution_mode="async")
    token = await tenant.token()
    with rec.settings(async_local_budget_seconds=0.2):
        r = await execute(rec.api, token, "default/segundo")
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


async def query_async_cancelled(rec: Recording) -> str:
    tenant = rec.tenant()
    tenant.endpoint(slug="lento", sql=SLOW_SQL, execution_mode="async")
    token = await tenant.token()
    r = await execute(rec.api, token, "default/lento", callback_url=rec.hook)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    await rec.started(job_id)
    await rec.client.get_workflow_handle(job_id).cancel()
    await rec.callback_of(token, r.json()["polling_url"])  # a cancelled job is called back as failed
    return job_id


async def _callback(rec: Recording, *replies: Reply) -> str:
    tenant = rec.tenant()
    token = await tenant.token()
    rec.receiver.replies.extend(replies)
    r = await execute(rec.api, token, "default/relatorio-mensal", {"mes": "2026-03"}, callback_url=rec.hook)
    assert r.status_code == 202, r.text
    return await rec.callback_of(token, r.json()["polling_url"])


async def callback_delivered_after_retries(rec: Recording) -> str:
    return await _callback(rec, Reply(500), Reply(200))


async def callback_gone(rec: Recording) -> str:
    return await _callback(rec, Reply(410))


async def job_completed(rec: Recording) -> str:
    org = Org(rec.app, rec.api)
    r = await org.submit(files={"file": ("vendas.csv", CSV, "text/csv")}, params={"a": 10, "b": 20})
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


async def job_failed(rec: Recording) -> str:
    r = await Org(rec.app, rec.api).submit(repository="falha")
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


async def job_cancelled(rec: Recording) -> str:
    org = Org(rec.app, rec.api)
    with tempfile.TemporaryDirectory() as tmp:
        pid_file = Path(tmp) / "pid"
        r = await org.submit(repository="lento", params={"sleep": 60, "pid_file": str(pid_file)})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):  # the repository's process is running
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.1)
        r = await org.api.delete(f"/api/v1/job/{job_id}", headers=org.headers(None))
        assert r.status_code == 200, r.text
    return job_id


async def prune_completed(rec: Recording) -> str:
    """A run of the prune schedule's workflow: the records, then a jobs worker's folders."""
    settings = rec.ctx.settings
    workflow_id = f"prune-{uuid.uuid4().hex[:8]}"
    await rec.client.start_workflow(PruneWorkflow.run, PruneInput(jobs_task_queue=settings.task_queue_jobs),
                                    id=workflow_id, task_queue=settings.task_queue_callbacks)
    return workflow_id


SCENARIOS: dict[str, Callable[[Recording], Awaitable[str]]] = {f.__name__: f for f in (
    query_sync_completed, query_sync_failed, query_sync_timed_out, query_async_completed_callback,
    query_async_cancelled, query_async_local_completed, query_async_local_outran, callback_delivered_after_retries,
    callback_gone, job_completed, job_failed, job_cancelled, prune_completed,
)}
# How each recorded workflow ended: the replay test checks the fixtures still show these paths.
CLOSED_AS = {
    "query_sync_completed": "COMPLETED", "query_sync_failed": "FAILED", "query_sync_timed_out": "FAILED",
    "query_async_completed_callback": "COMPLETED", "query_async_cancelled": "CANCELED",
    "query_async_local_completed": "COMPLETED", "query_async_local_outran": "COMPLETED",
    "callback_delivered_after_retries": "COMPLETED", "callback_gone": "COMPLETED",
    "job_completed": "COMPLETED", "job_failed": "FAILED", "job_cancelled": "CANCELED",
    "prune_completed": "COMPLETED",
}


# --- the stack ---------------------------------------------------------------------------------------------


async def record(names: list[str]) -> dict[str, str]:
    """The histories of the named scenarios, as JSON texts."""
    histories = {}
    async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
            dev_server_log_level="error") as env:
        target = env.client.service_client.config.target_host
        # Plaintext on purpose (no payload codec): a fixture must not depend on a key, and the replay test reads
        # these through the project's codec, proving that unencrypted histories (older workflows, encryption
        # switched off) still decode. Encrypted histories are replayed by tests/integration/dataapi/test_codec.py.
        client = await Client.connect(target, identity=IDENTITY)
        with tempfile.TemporaryDirectory(prefix="record-") as tmp:
            tmp_path = Path(tmp)
            run = uuid.uuid4().hex[:8]
            settings = Settings(
                var_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'dataapi.db'}", temporal_address=target,
                task_queue_queries=f"queries-{run}", task_queue_callbacks=f"callbacks-{run}",
                task_queue_jobs=f"jobs-{run}", query_heartbeat_seconds=2.0, job_heartbeat_seconds=2.0,
                callback_allow_cidrs=["127.0.0.0/8", "::1/128"], callback_allow_hosts=["localhost"],
                callback_ca_bundle=str(make_pki(tmp_path) / "ca.pem"),
                callback_schedule_seconds=[0, 0.3, 0.3], callback_jitter=0.0, callback_timeout_seconds=5.0)
            upgrade(settings.resolved_database_url)
            engine = make_engine(settings.resolved_database_url)
            receiver = Receiver(tmp_path)
            receiver.thread.start()
            app = create_app(settings, engine, client)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api, \
                        build_query_worker(client, settings), build_callback_worker(client, settings), \
                        build_job_worker(client, settings):
                    rec = Recording(client, app, api, receiver)
                    for name in names:
                        handle = await rec.closed(await SCENARIOS[name](rec))
                        status = (await handle.describe()).status
                        assert status is not None and status.name == CLOSED_AS[name], (name, status)
                        history = await handle.fetch_history()
                        histories[name] = json.dumps(json.loads(history.to_json()), indent=1, sort_keys=True)
                        print(f"{name}: {len(history.events)} events, {status.name}")
            finally:
                receiver.stop.set()
                receiver.server.shutdown()
                receiver.server.server_close()
                engine.dispose()
    return histories


def main() -> None:
    names = sys.argv[1:] or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]}; known: {', '.join(SCENARIOS)}")
    HISTORIES.mkdir(exist_ok=True)
    for name, text in asyncio.run(record(names)).items():
        (HISTORIES / f"{name}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
