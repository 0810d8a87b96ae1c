"""Operations: /metrics on the API and the worker, JSON logs carrying the job id, `dataapi temporal setup`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from cli.dev import metrics_banner, temporal_binary
from dataapi import temporal
from dataapi.logs import JsonFormatter, log_context
from dataapi.secrets import ensure_metrics_token, metrics_token_path
from tests.support.data_api import Tenant, bearer, execute, wait_job
from worker import build_query_worker, metrics_runtime


async def test_api_metrics_count_requests_by_route_and_jobs_by_state(stack):
    stack.state.ctx.settings = stack.state.ctx.settings.model_copy(update={"metrics_token": "scrape-me"})
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        tenant = Tenant(stack, api)
        token = await tenant.token()
        accepted = (await execute(api, token, "default/relatorio-mensal", {"mes": "2026-02"})).json()
        await wait_job(api, token, accepted["polling_url"])
        assert (await api.get(f"/api/v1/nowhere/{accepted['job_id']}")).status_code == 404
        wrong_method = (await api.delete("/api/v1/data-api/default/relatorio-mensal/execute")).status_code
        r = await api.get("/metrics", headers=bearer("scrape-me"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = "/api/v1/data-api/{namespace}/{slug}/jobs/{job_id}"
    assert f'dataapi_http_request_duration_seconds_count{{method="GET",route="{route}",status="200"}}' in text
    assert 'route="/api/v1/data-api/{namespace}/{slug}/execute",status="202"' in text
    assert f'route="/api/v1/data-api/{{namespace}}/{{slug}}/execute",status="{wrong_method}"' in text
    assert 'method="GET",route="unmatched",status="404"' in text
    assert accepted["job_id"] not in text  # routes are templates, never raw paths
    assert 'dataapi_jobs{kind="query",status="completed"}' in text


async def _scrape(settings, engine, headers=None) -> httpx.Response:
    from api.app import create_app

    transport = httpx.ASGITransport(app=create_app(settings, engine), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        return await api.get("/metrics", headers=headers or {})


def _refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json().keys() == {"code", "message", "request_id"} and r.json()["code"] == code, r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert "dataapi_" not in r.text and "# HELP" not in r.text


async def test_metrics_are_refused_by_default(settings, engine):
    """No token and not public (the defaults): 403 whatever the caller sends, never the metrics."""
    assert settings.metrics_token == "" and settings.metrics_public is False
    for headers in (None, bearer(""), bearer("anything"), {"Authorization": "Basic YTpi"}):
        _refused(await _scrape(settings, engine, headers), 403, "FORBIDDEN")
    assert not metrics_token_path(settings).exists()  # the API never makes a token up: only `dataapi dev` does


async def test_metrics_token(settings, engine):
    for locked in (settings.model_copy(update={"metrics_token": "s3cr3t"}),
                   settings.model_copy(update={"metrics_token": "s3cr3t", "metrics_public": True})):  # token wins
        for headers in (None, bearer("wrong"), bearer("s3cr3"), bearer("s3cr3tt"), {"Authorization": "s3cr3t"},
                        {"Authorization": "Basic s3cr3t"}, bearer("S3CR3T")):
            r = await _scrape(locked, engine, headers)
            _refused(r, 401, "UNAUTHORIZED")
            assert r.headers["www-authenticate"] == "Bearer"
        for headers in (bearer("s3cr3t"), {"Authorization": "bearer  s3cr3t "}):
            r = await _scrape(locked, engine, headers)
            assert r.status_code == 200 and "dataapi_http_request_duration_seconds" in r.text


async def test_metrics_public_is_open(settings, engine):
    r = await _scrape(settings.model_copy(update={"metrics_public": True}), engine)
    assert r.status_code == 200 and "dataapi_http_request_duration_seconds" in r.text


async def test_embedded_stack_token_file(settings, engine):
    """`dataapi dev` makes var/metrics-token once (0600) and says where; the API then requires it. A configured
    token takes precedence over the file."""
    banner = metrics_banner(settings)
    path = metrics_token_path(settings)
    token = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 40
    assert str(path) in banner and f"{settings.base_url}/metrics" in banner
    assert metrics_banner(settings) == banner and ensure_metrics_token(settings) == path.read_text() == token
    _refused(await _scrape(settings, engine), 401, "UNAUTHORIZED")
    _refused(await _scrape(settings, engine, bearer("x" + token[1:])), 401, "UNAUTHORIZED")
    assert (await _scrape(settings, engine, bearer(token))).status_code == 200
    configured = settings.model_copy(update={"metrics_token": "from-the-environment"})
    _refused(await _scrape(configured, engine, bearer(token)), 401, "UNAUTHORIZED")
    assert (await _scrape(configured, engine, bearer("from-the-environment"))).status_code == 200
    assert "<DATAAPI_METRICS_TOKEN>" in metrics_banner(configured)


def test_public_or_configured_metrics_make_no_token_file(settings):
    for update in ({"metrics_public": True}, {"metrics_token": "t"}):
        metrics_banner(settings.model_copy(update=update))
        assert not metrics_token_path(settings).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _outgoing_address() -> str | None:
    """This host's non-loopback IPv4 address, if it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


def test_worker_metrics_listen_on_loopback_only_by_default(settings):
    """The SDK's metrics server has no authentication: by default it is not reachable from another host."""
    address = _outgoing_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to probe")
    port = _free_port()
    runtime = metrics_runtime(settings.model_copy(update={"worker_metrics_port": port}))
    assert runtime is not None and settings.worker_metrics_host == "127.0.0.1"
    deadline = time.monotonic() + 5
    while True:  # the exporter starts with the runtime, on its own thread
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{address}:{port}/metrics", timeout=2)


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
    """``dataapi temporal setup`` exits without the interpreter's teardown (cli.main.run): what it printed
    to a pipe (block-buffered) still arrives, and its status is the command's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_") and k != "PYTHONUNBUFFERED"}
    env.update(DATAAPI_VAR_DIR=str(tmp_path),
               DATAAPI_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host)
    done = await asyncio.to_thread(subprocess.run, [str(Path(sys.executable).parent / "dataapi"), "temporal", "setup"],
                                   env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "search attributes already registered\nprune schedule dataapi-prune created\n", "")
