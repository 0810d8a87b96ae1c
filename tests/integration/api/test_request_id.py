"""``X-Request-Id`` on every answer (success, 404, 405, 500, both dialects) and in the JSON log lines of the
request; the CORS allow-list (off by default); ``GET /`` pointing to the docs."""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pytest
from starlette.routing import Route

from api.app import create_app
from dataapi.logs import JsonFormatter
from dataapi.settings import Settings
from tests.support.errors import error_body

GENERATED = re.compile(r"[0-9a-f]{32}")
APP_ORIGIN = "https://app.example.com"


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/healthz", 200),
    ("GET", "/nope", 404),
    ("GET", "/api/v1/data-api/nope", 404),
    ("DELETE", "/healthz", 405),
    ("GET", "/api/v1/job/abc", 400),  # the Jobs API dialect: missing identity headers
    ("POST", "/api/v1/auth/api-key", 400),
])
async def test_every_answer_carries_a_generated_id(client, method, path, status):
    r1, r2 = await client.request(method, path), await client.request(method, path)
    assert r1.status_code == status, r1.text
    assert GENERATED.fullmatch(r1.headers["x-request-id"]) and r1.headers["x-request-id"] != r2.headers["x-request-id"]
    if status >= 400:
        error_body(r1)  # the body's request_id is the header's


@pytest.mark.parametrize("sent", ["abc-123", "req_1.2:3", "A" * 128, "0f" * 16])
async def test_a_well_formed_caller_id_is_kept(client, sent):
    for path in ("/healthz", "/nope", "/api/v1/job/abc"):
        r = await client.get(path, headers={"X-Request-Id": sent})
        assert r.headers["x-request-id"] == sent
        if r.status_code >= 400:
            assert r.json()["request_id"] == sent


@pytest.mark.parametrize("sent", ["", "A" * 129, "has space", "semi;colon", "quote\"", "é"])
async def test_a_malformed_caller_id_is_replaced(client, sent):
    r = await client.get("/nope", headers={"X-Request-Id": sent.encode()})
    assert GENERATED.fullmatch(r.headers["x-request-id"]), r.headers["x-request-id"]
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_the_request_s_log_lines_carry_its_id(app, client):
    """An unexpected error's 500 (rendered by Starlette's outermost handler) and the log line the operator gets
    for it carry the same id."""
    def boom(_request):
        raise RuntimeError("boom")

    app.router.routes.insert(0, Route("/boom", boom))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dataapi")
    logger.addHandler(handler)
    try:
        r = await client.get("/boom", headers={"X-Request-Id": "trace-me-42"})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 500 and r.headers["x-request-id"] == "trace-me-42"
    assert error_body(r) == {"code": "INTERNAL_ERROR", "message": "Internal error"}
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(line["message"].startswith("unhandled error") and line["request_id"] == "trace-me-42"
               for line in lines), lines
    assert JsonFormatter().format(logging.makeLogRecord({"msg": "outside"})).find("request_id") == -1


async def test_get_root_points_to_the_docs(client):
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert (body["docs"], body["openapi"], body["health"]) == ("/docs", "/openapi.json", "/healthz")
    for path in (body["docs"], body["openapi"], body["health"]):
        assert (await client.get(path)).status_code == 200, path
    assert "/" not in (await client.get("/openapi.json")).json()["paths"]  # a pointer, not an operation


# --- CORS ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def cors_client(tmp_path, sqlite_url, engine):
    app = create_app(Settings(var_dir=tmp_path / "var", database_url=sqlite_url, cors_origins=[APP_ORIGIN]), engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


def preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-request-id"}


async def test_cors_is_off_by_default(client):
    r = await client.get("/healthz", headers={"Origin": APP_ORIGIN})
    assert r.status_code == 200 and not any(h.startswith("access-control-") for h in r.headers)
    r = await client.options("/api/v1/data-api/ns/slug/execute", headers=preflight(APP_ORIGIN))
    assert "access-control-allow-origin" not in r.headers


async def test_an_allowed_origin_passes_preflight_and_reads_answers(cors_client):
    r = await cors_client.options("/api/v1/data-api/ns/slug/execute", headers=preflight(APP_ORIGIN))
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in ("authorization", "content-type", "x-request-id"))
    assert "access-control-allow-credentials" not in r.headers
    for path in ("/healthz", "/api/v1/data-api/ns/slug/jobs/x"):  # a success and an error (401)
        r = await cors_client.get(path, headers={"Origin": APP_ORIGIN})
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN, path
        exposed = r.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed and "retry-after" in exposed


async def test_another_origin_is_refused(cors_client):
    r = await cors_client.options("/api/v1/data-api/ns/slug/execute", headers=preflight("https://evil.example"))
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    r = await cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
