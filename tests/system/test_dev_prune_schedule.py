"""The embedded stack's retention in Temporal: ``dataapi dev`` creates the prune schedule (and on a restart finds it
again, one schedule), its triggered run completes on the stack's own workers, and the namespace keeps closed
histories as long as results."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, ScheduleActionStartWorkflow

from dataapi.converter import data_converter
from dataapi.settings import Settings
from tests.system.test_dev_stack import DevStack

pytestmark = pytest.mark.slow


@pytest.fixture
def dev(tmp_path):
    stack = DevStack(tmp_path)
    yield stack
    stack.cleanup()


async def _client(dev: DevStack) -> Client:
    keyset = (dev.var / "payload-keys.json").read_text()
    return await Client.connect(f"127.0.0.1:{dev.temporal_port}",
                                data_converter=data_converter(Settings(payload_keyset=keyset)))


async def _run_the_schedule(dev: DevStack) -> dict:
    client = await _client(dev)
    schedules = [s.id async for s in await client.list_schedules()]
    assert schedules.count("dataapi-prune") == 1, schedules
    handle = client.get_schedule_handle("dataapi-prune")
    described = await handle.describe()
    assert isinstance(described.schedule.action, ScheduleActionStartWorkflow)
    assert described.schedule.action.task_queue == "dataapi-callbacks"
    answer = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
    assert answer.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(days=7)
    before = len(described.info.recent_actions)
    await handle.trigger()
    deadline = time.monotonic() + 60
    while len((await handle.describe()).info.recent_actions) == before:
        assert time.monotonic() < deadline, "the triggered run did not start"
        await asyncio.sleep(0.2)
    run = (await handle.describe()).info.recent_actions[-1].action
    return await client.get_workflow_handle(run.workflow_id, run_id=run.first_execution_run_id).result()


def test_dev_creates_the_prune_schedule_once_and_its_run_completes(dev):
    dev.start("first")
    dev.wait_ready()
    counts = asyncio.run(_run_the_schedule(dev))
    assert counts["data_jobs_expired"] == 0 and counts["work_folders"] == 0, json.dumps(counts)
    dev.interrupt()
    dev.start("second")
    dev.wait_ready()
    asyncio.run(_run_the_schedule(dev))  # still one schedule; a second run
    dev.interrupt()
