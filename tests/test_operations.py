"""Operations: /metrics on the API and the worker, JSON logs carrying the job id, `dataapi temporal setup`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from dataapi import temporal
from dataapi.dev import temporal_binary
from dataapi.logs import JsonFormatter, log_context
from tests.test_data_api import Tenant, bearer, execute, wait_job
from worker import build_query_worker, metrics_runtime


async def test_api_metrics_count_requests_by_route_and_jobs_by_state(stack):
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        tenant = Tenant(stack, api)
        token = await tenant.token()
        accepted = (await execute(api, token, "default/relatorio-mensal", {"mes": "2026-02"})).json()
        await wait_job(api, token, accepted["polling_url"])
        assert (await api.get(f"/api/v1/nowhere/{accepted['job_id']}")).status_code == 404
        wrong_method = (await api.delete("/api/v1/data-api/default/relatorio-mensal/execute")).status_code
        r = await api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = "/api/v1/data-api/{namespace}/{slug}/jobs/{job_id}"
    assert f'dataapi_http_request_duration_seconds_count{{method="GET",route="{route}",status="200"}}' in text
    assert 'route="/api/v1/data-api/{namespace}/{slug}/execute",status="202"' in text
    assert f'route="/api/v1/data-api/{{namespace}}/{{slug}}/execute",status="{wrong_method}"' in text
    assert 'method="GET",route="unmatched",status="404"' in text
    assert accepted["job_id"] not in text  # routes are templates, never raw paths
    assert 'dataapi_jobs{kind="query",status="completed"}' in text


async def test_metrics_token(app, settings, engine):
    from api.app import create_app

    locked = create_app(settings.model_copy(update={"metrics_token": "s3cr3t"}), engine)
    transport = httpx.ASGITransport(app=locked, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        assert (await api.get("/metrics")).status_code == 401
        assert (await api.get("/metrics", headers=bearer("wrong"))).status_code == 401
        assert (await api.get("/metrics", headers=bearer("s3cr3t"))).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_worker_serves_sdk_metrics(stack_settings, temporal_env, stack_app):
    settings = stack_settings.model_copy(update={"worker_metrics_port": _free_port()})
    client = await temporal.connect(settings, runtime=metrics_runtime(settings))
    transport = httpx.ASGITransport(app=stack_app, raise_app_exceptions=False)
    async with build_query_worker(client, settings), \
            httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        tenant = Tenant(stack_app, api)
        r = await execute(api, await tenant.token(), "default/vendas-por-regiao", {"data_inicio": "2026-01-01"})
        assert r.status_code == 200
        # The answer is handed off by the query activity; the workflow task completes (and is counted) just after.
        async with httpx.AsyncClient() as plain:
            for _ in range(100):
                text = (await plain.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")).text
                if "workflow_task_execution_latency" in text:
                    break
                await asyncio.sleep(0.1)
    assert "temporal_workflow_task_execution_latency" in text or "workflow_task_execution_latency" in text
    assert settings.task_queue_queries in text


def test_json_logs_carry_the_job_and_company():
    record = logging.LogRecord("dataapi.x", logging.INFO, __file__, 1, "query of %s failed", ("x",), None)
    record.temporal_activity = {"workflow_id": "0123456789abcdef01234567", "task_queue": "q"}
    token = log_context.set({"company": "acme"})
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        log_context.reset(token)
    assert line["message"] == "query of x failed" and line["level"] == "INFO"
    assert line["job_id"] == "0123456789abcdef01234567" and line["company"] == "acme"


async def test_temporal_setup_registers_search_attributes_on_a_bare_cluster():
    namespace = "default"
    async with await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(),
                                                     dev_server_log_level="error") as env:
        assert sorted(await temporal.setup(env.client, namespace)) == sorted(k.name for k in temporal.SEARCH_ATTRIBUTES)
        assert await temporal.setup(env.client, namespace) == []  # idempotent
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace))
    assert {k.name for k in temporal.SEARCH_ATTRIBUTES} <= set(listed.custom_attributes)


async def test_the_console_script_keeps_its_output_and_status_after_using_temporal(temporal_env, tmp_path):
    """``dataapi temporal setup`` exits without the interpreter's teardown (dataapi.cli.run): what it printed
    to a pipe (block-buffered) still arrives, and its status is the command's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_") and k != "PYTHONUNBUFFERED"}
    env.update(DATAAPI_VAR_DIR=str(tmp_path),
               DATAAPI_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host)
    done = await asyncio.to_thread(subprocess.run, [str(Path(sys.executable).parent / "dataapi"), "temporal", "setup"],
                                   env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "search attributes already registered\n", "")
