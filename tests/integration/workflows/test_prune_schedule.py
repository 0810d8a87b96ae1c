"""The prune schedule on the real dev server, with SQLite and PostgreSQL: ``dataapi temporal setup`` creates it (and
again only brings it up to date), a triggered run's PruneWorkflow expires what is due and removes a jobs worker's
leftover job folder, and the embedded stack's namespace keeps histories as long as results."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import ScheduleActionStartWorkflow

from cli.main import main
from cli.prune_schedule import ensure_prune_schedule, set_namespace_retention
from dataapi.db import make_engine, session_scope
from dataapi.identity import service as identity
from dataapi.models import Endpoint, Job, as_utc, utcnow
from dataapi.settings import get_settings
from dataapi.storage.factory import store_from_settings
from tests.conftest import unique_slug
from tests.support.polling import wait_until
from worker import build_callback_worker, build_job_worker
from workflows.prune import PruneWorkflow


@pytest.fixture
def settings(stack_settings, db_url):
    return stack_settings.model_copy(update={
        "database_url": db_url, "prune_schedule_id": f"prune-{uuid.uuid4().hex[:8]}",
        "task_queue_jobs": f"jobs-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
async def schedule(settings, temporal_env):
    handle = temporal_env.client.get_schedule_handle(settings.prune_schedule_id)
    yield handle
    await handle.delete()


def _setup_command(settings, monkeypatch) -> None:
    """``dataapi temporal setup`` as an operator runs it: settings from the environment."""
    for name in ("temporal_address", "payload_keyset", "prune_schedule_id", "task_queue_callbacks",
                 "task_queue_jobs", "database_url"):
        monkeypatch.setenv(f"DATAAPI_{name.upper()}", str(getattr(settings, name)))
    get_settings.cache_clear()
    try:
        assert main(["temporal", "setup"]) == 0
    finally:
        get_settings.cache_clear()


async def test_setup_creates_the_schedule_once_and_its_run_prunes(settings, schedule, temporal_env, monkeypatch,
                                                                  capsys):
    await asyncio.to_thread(_setup_command, settings, monkeypatch)
    await asyncio.to_thread(_setup_command, settings, monkeypatch)
    out = capsys.readouterr().out
    assert f"prune schedule {settings.prune_schedule_id} created" in out
    assert f"prune schedule {settings.prune_schedule_id} updated" in out

    described = await schedule.describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "PruneWorkflow" and action.task_queue == settings.task_queue_callbacks
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(hours=1)]
    # Re-created with other settings: the one schedule takes them.
    assert await ensure_prune_schedule(temporal_env.client, settings.model_copy(
        update={"prune_interval_seconds": 600})) is False
    assert [i.every for i in (await schedule.describe()).schedule.spec.intervals] == [timedelta(minutes=10)]

    job_id, result_key = _an_expired_job(settings)
    leftover = settings.var_dir / "work" / str(uuid.uuid4())
    (leftover / "output").mkdir(parents=True)
    async with build_callback_worker(temporal_env.client, settings), \
            build_job_worker(temporal_env.client, settings):
        await schedule.trigger()

        async def started():
            actions = (await schedule.describe()).info.recent_actions
            return actions[-1].action if actions else None

        run = await wait_until(started, 30, step=0.2)
        counts = await temporal_env.client.get_workflow_handle_for(
            PruneWorkflow.run, run.workflow_id, run_id=run.first_execution_run_id).result()
    assert counts.data_jobs_expired >= 1 and counts.work_folders == 1
    assert not leftover.exists() and not store_from_settings(settings).exists(result_key)
    engine = make_engine(settings.resolved_database_url)
    with session_scope(engine) as s:
        assert as_utc(s.get(Job, job_id).expired_at) > utcnow() - timedelta(minutes=5)
    engine.dispose()


def _an_expired_job(settings) -> tuple[str, str]:
    """A finished job of an endpoint, ended eight days ago, with its stored result."""
    engine = make_engine(settings.resolved_database_url)
    job_id = uuid.uuid4().hex[:24]
    with session_scope(engine) as s:
        company = identity.create_company(s, unique_slug())
        endpoint = Endpoint(company_id=company.id, slug="e", sql="SELECT 1")
        s.add(endpoint)
        s.flush()
        key = f"results/{company.slug}/{job_id}.json"
        ended = utcnow() - timedelta(days=8)
        s.add(Job(id=job_id, company_id=company.id, endpoint_id=endpoint.id, mode="async", status="completed",
                  result_key=key, created_at=ended, completed_at=ended))
    engine.dispose()
    store_from_settings(settings).put_bytes(key, b'{"rows": []}')
    return job_id, key


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_embedded_namespace_keeps_histories_as_long_as_results(settings, temporal_env):
    client = temporal_env.client
    kept = await set_namespace_retention(client, settings)
    assert kept == timedelta(days=7)
    answer = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    assert answer.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(days=7)
    short = settings.model_copy(update={"result_retention_seconds": 3600.0})
    assert await set_namespace_retention(client, short) == timedelta(days=1)  # a namespace's least
