"""The Python client (dataapi.client) against the real stack: the API in-process over httpx's ASGI transport (the
asyncio flavour) and as a real ``dataapi api`` process over HTTP (the sync flavour), the real Temporal dev
server, real workers, real callbacks, real repository runs."""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from cli.demo import REPOSITORY
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    DataAPIError,
    ExecutionError,
    ExecutionTimeoutError,
    IdempotencyKeyReusedError,
    JobFailedError,
    JobNotFinishedError,
    JobTimeoutError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    RateLimitedError,
    ResultExpiredError,
    ServerError,
    ValidationError,
    WebhookVerificationError,
    verify_webhook,
)
from dataapi.client._core import Backoff
from dataapi.client._ops import Request, Retry, execute_request
from dataapi.client.errors import error_from_response, parse_retry_after
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.identity.tokens import TokenService
from dataapi.secrets import jwt_keyset, new_keyset
from tests.conftest import app_and_client
from tests.support.data_api import SLOW_SQL, Tenant, bearer
from tests.support.jobs_api import CSV, Org
from tests.support.processes import DATAAPI, api_ready, create_tenant, until
from worker import build_callback_worker, build_query_worker

CLIENT_DIR = Path(__file__).resolve().parents[2] / "dataapi" / "client"
SALES = "default/vendas-por-regiao"
MONTHLY = "default/relatorio-mensal"


# --- helpers -------------------------------------------------------------------------------------------------

class Recording(httpx.AsyncBaseTransport):
    """Passes requests to the real transport and notes (method, path, status) of each: what went over the wire."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner, self.seen = inner, []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append((request.method, request.url.path, response.status_code))
        return response

    def auth_calls(self) -> list[tuple[str, int]]:
        return [(p.rsplit("/", 1)[1], s) for _, p, s in self.seen if p.startswith("/api/v1/auth/")]

    def unauthorized(self) -> list:
        return [s for s in self.seen if s[2] == 401]


class SyncRecording(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport):
        self.inner, self.seen, self._lock = inner, [], threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        with self._lock:
            self.seen.append((request.method, request.url.path, response.status_code))
        return response


def asgi(app) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=app, raise_app_exceptions=False)


def client_for(app, tenant: Tenant, user=None, transport=None, **kw) -> AsyncClient:
    _, key, secret = user or tenant.user()
    return AsyncClient("http://testserver", tenant.slug, key, secret, transport=transport or asgi(app), **kw)


def set_tokens(app, ttl: int = 600, keyset: dict | None = None) -> None:
    """The server's token service with another access-token lifetime (no leeway, so that an expired token is
    refused at once) or another signing keyset (the old key removed, as after a compromise)."""
    ctx = app.state.ctx
    s = ctx.settings
    ctx.tokens = TokenService(keyset or jwt_keyset(s), s.jwt_issuer, s.jwt_audience, 0, ttl,
                              s.refresh_token_ttl_seconds)


def zip_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(transport=asgi(stack), base_url="http://testserver", timeout=120) as c:
        yield c


@pytest.fixture
def tenant(stack, api) -> Tenant:
    return Tenant(stack, api)


# --- the package stands alone --------------------------------------------------------------------------------

def test_importing_the_client_loads_none_of_the_server():
    code = ("import sys, dataapi.client; "
            "print(sorted(m for m in ('temporalio', 'duckdb', 'sqlalchemy', 'starlette', 'sqlmodel', 'pydantic', "
            "'api', 'activities', 'workflows') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_client_imports_only_the_standard_library_and_httpx():
    """Copyable on its own: every import of the package is the standard library, httpx or the package itself."""
    found = set()
    for path in CLIENT_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module)
    foreign = {m for m in found if m.split(".")[0] not in sys.stdlib_module_names
               and m.split(".")[0] != "httpx" and not m.startswith("dataapi.client")}
    assert foreign == set() and "dataapi.client.errors" in found


# --- the Data API, asyncio flavour, in-process -------------------------------------------------------------

async def test_execute_returns_what_a_raw_call_returns(tenant, api, stack):
    user = tenant.user()
    async with client_for(stack, tenant, user) as client:
        result = await client.execute(SALES, data_inicio="2026-01-01", regiao="Sul")
        assert (await client.login())["name"] == user[0]
    raw = await api.post(f"/api/v1/data-api/{SALES}/execute", headers=bearer(await tenant.token(user=user)),
                         json={"parameter_values": {"data_inicio": "2026-01-01", "regiao": "Sul"}})
    body = raw.json()
    assert result.rows == body["rows"] and len(result.rows) == 1 and result.rows[0]["regiao"] == "Sul"
    assert result.columns == body["columns"] == [{"name": "regiao", "type": "varchar"},
                                                  {"name": "total", "type": "decimal"}]
    assert (result.row_count, result.truncated, result.max_rows) == (1, False, 10000)
    assert result.executed_at.endswith("Z") and result.job_id is None
    assert set(result.raw) == set(body) and list(result) == result.rows


async def test_an_expiring_token_is_refreshed_before_it_is_refused(tenant, stack):
    set_tokens(stack, ttl=3)  # and no leeway: a token past its 3 s would be a 401
    rec = Recording(asgi(stack))
    async with client_for(stack, tenant, transport=rec) as client:
        first = await client.execute(SALES, data_inicio="2026-01-01")
        await asyncio.sleep(3.2)
        second = await client.execute(SALES, data_inicio="2026-01-01")
    assert first.rows == second.rows and first.row_count == 5
    assert rec.auth_calls() == [("api-key", 200), ("refresh", 200)]
    assert rec.unauthorized() == []  # the caller never saw, and the server never refused, an expired token


async def test_concurrent_calls_share_one_refresh(tenant, stack):
    """A refresh token is single-use (its reuse revokes the session): tasks needing a new token at once must
    wait for the one renewal."""
    set_tokens(stack, ttl=3)
    rec = Recording(asgi(stack))
    async with client_for(stack, tenant, transport=rec) as client:
        await client.login()
        await asyncio.sleep(3.2)
        results = await asyncio.gather(*[client.execute(SALES, data_inicio="2026-01-01") for _ in range(8)])
    assert all(r.row_count == 5 for r in results)
    assert rec.auth_calls() == [("api-key", 200), ("refresh", 200)] and rec.unauthorized() == []


async def test_a_refused_token_is_renewed_once_and_the_call_repeated(tenant, stack):
    """The server drops its signing key: the access and refresh tokens in hand are refused; the client logs in
    again with its key and repeats the call, once."""
    rec = Recording(asgi(stack))
    async with client_for(stack, tenant, transport=rec) as client:
        await client.execute(SALES, data_inicio="2026-01-01")
        set_tokens(stack, keyset=new_keyset())
        result = await client.execute(SALES, data_inicio="2026-01-01", regiao="Norte")
    assert [r["regiao"] for r in result.rows] == ["Norte"]
    execute = f"/api/v1/data-api/{SALES}/execute"
    assert rec.seen[-4:] == [("POST", execute, 401), ("POST", "/api/v1/auth/refresh", 401),
                             ("POST", "/api/v1/auth/api-key", 200), ("POST", execute, 200)]


async def test_a_revoked_key_raises_authentication_error(tenant, stack):
    set_tokens(stack, ttl=3)
    rec = Recording(asgi(stack))
    name, key, secret = tenant.user()
    async with client_for(stack, tenant, (name, key, secret), transport=rec) as client:
        await client.execute(SALES, data_inicio="2026-01-01")
        with session_scope(tenant.ctx.engine) as s:
            identity.revoke_api_key(s, key)
        # The access token in hand stays valid until it expires (verified without a database read) ...
        assert (await client.execute(SALES, data_inicio="2026-01-01")).row_count == 5
        await asyncio.sleep(3.2)
        # ... then neither the refresh nor a new login is accepted, and the caller is told.
        with pytest.raises(AuthenticationError) as err:
            await client.execute(SALES, data_inicio="2026-01-01")
    assert err.value.status == 401 and err.value.code == "UNAUTHORIZED" and err.value.message == "Invalid credentials"
    assert rec.auth_calls() == [("api-key", 200), ("refresh", 401), ("api-key", 401)]


async def test_a_wrong_secret_raises_authentication_error(tenant, stack):
    name, key, _ = tenant.user()
    async with client_for(stack, tenant, (name, key, "not-the-secret")) as client:
        with pytest.raises(AuthenticationError) as err:
            await client.execute(SALES, data_inicio="2026-01-01")
    assert err.value.status == 401 and isinstance(err.value, DataAPIError)


async def test_submit_and_wait_on_an_async_endpoint(tenant, api, stack):
    user = tenant.user()
    async with client_for(stack, tenant, user) as client:
        job = await client.submit(MONTHLY, {"mes": "2026-03"})
        assert job.status == "processing" and len(job.job_id) == 24
        assert job.polling_url == f"/api/v1/data-api/{MONTHLY}/jobs/{job.job_id}"
        result = await job.wait(timeout=60, poll_interval=0.05)
        assert job.status == "completed" and job.error is None and job.completed_at.endswith("Z")
        again = await client.get_job(MONTHLY, job.job_id)
        # execute() on an async endpoint waits for its job
        direct = await client.execute(MONTHLY, mes="2026-03")
    raw = (await api.get(job.polling_url, headers=bearer(await tenant.token(user=user)))).json()
    assert raw["status"] == "completed" and result.rows == raw["result"]["rows"] and result.row_count > 0
    assert result.columns == raw["result"]["columns"] and result.job_id == job.job_id
    assert again.status == "completed" and again.result.rows == result.rows and again.raw == raw
    assert direct.rows == result.rows and direct.job_id not in (None, job.job_id)


async def test_submit_on_a_sync_endpoint_gives_a_finished_job(tenant, stack):
    async with client_for(stack, tenant) as client:
        job = await client.submit(SALES, {"data_inicio": "2026-01-01"})
        assert job.status == "completed" and job.job_id is None
        assert (await job.wait()).row_count == 5


async def test_errors_are_typed(tenant, stack):
    tenant.endpoint(slug="quebrado", sql="SELECT * FROM tabela_que_nao_existe")
    tenant.endpoint(slug="quebrado-async", sql="SELECT * FROM tabela_que_nao_existe", execution_mode="async")
    tenant.endpoint(slug="lento", sql=SLOW_SQL)
    async with client_for(stack, tenant) as client:
        with pytest.raises(ExecutionError) as err:
            await client.execute("default/quebrado")
        assert (err.value.status, err.value.code) == (500, "EXECUTION_ERROR") and isinstance(err.value, ServerError)

        job = await client.submit("default/quebrado-async")
        with pytest.raises(JobFailedError) as failed:
            await job.wait(timeout=60, poll_interval=0.05)
        assert failed.value.job is job and job.status == "failed" and failed.value.message == job.error
        assert failed.value.code == "JOB_FAILED" and job.error

        with pytest.raises(NotFoundError) as err:
            await client.execute("default/nao-existe")
        assert (err.value.status, err.value.code) == (404, "ENDPOINT_NOT_FOUND")
        with pytest.raises(NotFoundError) as err:
            await client.get_job(MONTHLY, "0" * 24)
        assert err.value.code == "JOB_NOT_FOUND"

        with pytest.raises(ValidationError) as err:
            await client.execute(SALES, data_inicio="ontem")
        assert err.value.status == 422 and "data_inicio" in err.value.message
        with pytest.raises(ValidationError) as err:
            await client.submit(MONTHLY, {"mes": "2026-03"}, callback_url="http://not-https.example/hook")
        assert err.value.status == 422 and err.value.code == "INVALID_CALLBACK_URL"

        stack.state.ctx.settings = stack.state.ctx.settings.model_copy(update={"sync_timeout_seconds": 1.5})
        with pytest.raises(ExecutionTimeoutError) as err:
            await client.execute("default/lento")
        assert (err.value.status, err.value.code) == (408, "EXECUTION_TIMEOUT")

    async with client_for(stack, tenant, tenant.user(policies=("JobsAPIConsumer",))) as client:
        with pytest.raises(PermissionDeniedError) as err:
            await client.execute(SALES, data_inicio="2026-01-01")
        assert (err.value.status, err.value.code) == (403, "FORBIDDEN")

    with pytest.raises(ValueError, match="namespace/slug"):
        async with client_for(stack, tenant) as client:
            await client.execute("vendas-por-regiao")


class Unavailable(httpx.AsyncBaseTransport):
    """In front of the real app, as a load balancer during a deploy: the first ``times`` polls of a job get 503
    with ``Retry-After``; every request's time is noted."""

    def __init__(self, inner, times: int, retry_after: str):
        self.inner, self.times, self.retry_after = inner, times, retry_after
        self.polls: list[tuple[float, int]] = []

    async def handle_async_request(self, request):
        if request.method == "GET" and "/jobs/" in request.url.path:
            if self.times > 0:
                self.times -= 1
                self.polls.append((time.monotonic(), 503))
                return httpx.Response(503, headers={"Retry-After": self.retry_after},
                                      json={"code": "SERVICE_UNAVAILABLE", "message": "Service unavailable"})
            response = await self.inner.handle_async_request(request)
            self.polls.append((time.monotonic(), response.status_code))
            return response
        return await self.inner.handle_async_request(request)


async def test_wait_honours_retry_after_and_its_timeout(tenant, stack):
    tenant.endpoint(slug="segundo", execution_mode="async",
                    sql="SELECT count(*) AS n FROM range(20000) a, range(20000) b WHERE a.range * b.range = -1")
    flaky = Unavailable(asgi(stack), times=1, retry_after="1")
    async with client_for(stack, tenant, transport=flaky) as client:
        job = await client.submit(MONTHLY, {"mes": "2026-03"})
        result = await job.wait(timeout=60, poll_interval=0.01, max_poll_interval=0.02)
        assert result.row_count > 0
        (t503, s503), (t_next, _) = flaky.polls[:2]
        assert s503 == 503 and t_next - t503 >= 0.95  # 1 s asked for, against pauses of 10-20 ms otherwise

        slow = await client.submit("default/segundo")
        started = time.monotonic()
        with pytest.raises(JobTimeoutError) as err:
            await slow.wait(timeout=0.2, poll_interval=0.05)
        assert time.monotonic() - started < 1.0 and err.value.job is slow and slow.status == "processing"
        assert (await slow.wait(timeout=60, poll_interval=0.05)).rows == [{"n": 0}]  # the job went on


def test_backoff_doubles_up_to_its_cap_and_takes_retry_after():
    b = Backoff(0.5, 4.0, timeout=None)
    assert [b.next_pause() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.next_pause(retry_after=7.0) == 7.0  # the server's word over the schedule
    short = Backoff(0.5, 4.0, timeout=0.3)
    assert 0.25 < short.next_pause() <= 0.3  # never past the deadline
    with pytest.raises(ValueError):
        Backoff(0, 1, None)


# --- error mapping of both dialects -------------------------------------------------------------------------

def _response(status: int, body=None, headers=None, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(("status", "body", "cls", "code"), [
    (400, {"code": "INVALID_PARAMS", "message": "Missing namespace or slug"}, ValidationError, "INVALID_PARAMS"),
    (422, {"code": "INVALID_PARAMETER", "message": "x"}, ValidationError, "INVALID_PARAMETER"),
    (401, {"code": "UNAUTHORIZED", "message": "Missing or invalid token"}, AuthenticationError, "UNAUTHORIZED"),
    (403, {"code": "FORBIDDEN", "message": "x"}, PermissionDeniedError, "FORBIDDEN"),
    (404, {"code": "ENDPOINT_NOT_FOUND", "message": "x"}, NotFoundError, "ENDPOINT_NOT_FOUND"),
    (408, {"code": "EXECUTION_TIMEOUT", "message": "x"}, ExecutionTimeoutError, "EXECUTION_TIMEOUT"),
    (429, {"code": "RATE_LIMITED", "message": "x"}, RateLimitedError, "RATE_LIMITED"),
    (500, {"code": "EXECUTION_ERROR", "message": "x"}, ExecutionError, "EXECUTION_ERROR"),
    (500, {"code": "INTERNAL_ERROR", "message": "x"}, ServerError, "INTERNAL_ERROR"),
    (503, {"code": "SERVICE_UNAVAILABLE", "message": "x"}, ServerError, "SERVICE_UNAVAILABLE"),
    (400, {"error": "Missing organization_id"}, ValidationError, "BAD_REQUEST"),
    (401, {"error": "Invalid API key"}, AuthenticationError, "UNAUTHORIZED"),
    (403, {"error": "Forbidden"}, PermissionDeniedError, "FORBIDDEN"),
    (404, {"error": "Invalid job_id"}, NotFoundError, "NOT_FOUND"),
    (500, {"error": "Job failed"}, JobFailedError, "JOB_FAILED"),
    (500, {"error": "Error deleting job folder"}, ServerError, "INTERNAL_ERROR"),
    (202, {"message": "Job not yet finished"}, JobNotFinishedError, "JOB_NOT_FINISHED"),
    (406, {"code": "NOT_ACCEPTABLE", "message": "x"}, NotAcceptableError, "NOT_ACCEPTABLE"),
    (409, {"code": "JOB_NOT_FINISHED", "message": "x"}, JobNotFinishedError, "JOB_NOT_FINISHED"),
    (409, {"code": "JOB_FAILED", "message": "x"}, JobFailedError, "JOB_FAILED"),
    (409, {"code": "IDEMPOTENCY_KEY_IN_USE", "message": "x"}, ConflictError, "IDEMPOTENCY_KEY_IN_USE"),
    (410, {"code": "RESULT_EXPIRED", "message": "x"}, ResultExpiredError, "RESULT_EXPIRED"),
    (410, {"error": "The job's result expired"}, ResultExpiredError, "RESULT_EXPIRED"),
    (422, {"code": "IDEMPOTENCY_KEY_REUSED", "message": "x"}, IdempotencyKeyReusedError, "IDEMPOTENCY_KEY_REUSED"),
    (422, {"error": "This Idempotency-Key names a job created by a different request"}, IdempotencyKeyReusedError,
     "IDEMPOTENCY_KEY_REUSED"),
    (422, {"error": "Unprocessable"}, ValidationError, "UNPROCESSABLE_ENTITY"),
])
def test_both_error_dialects_map_to_typed_errors(status, body, cls, code):
    err = error_from_response(_response(status, body))
    assert type(err) is cls and err.status == status and err.code == code and err.body == body
    assert err.message == body.get("message", body.get("error"))


def test_error_details_request_id_retry_after_and_non_json():
    err = error_from_response(_response(429, {"code": "RATE_LIMITED", "message": "slow down", "request_id": "r-1"},
                                        headers={"Retry-After": "7"}))
    assert isinstance(err, RateLimitedError) and err.retry_after == 7.0 and err.request_id == "r-1"
    assert "r-1" in str(err) and "HTTP 429 RATE_LIMITED" in str(err)
    err = error_from_response(_response(502, text="<html>Bad Gateway</html>", headers={"X-Request-Id": "abc"}))
    assert isinstance(err, ServerError) and err.request_id == "abc" and "Bad Gateway" in err.message
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and parse_retry_after("soon") is None
    future = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 < parse_retry_after(future) <= 30
    limited = error_from_response(_response(429, {"code": "RATE_LIMITED", "message": "x"}, headers={
        "Retry-After": "12", "RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "12",
        "RateLimit-Policy": '3;w=60;comment="API key"'}))
    assert limited.rate_limit == RateLimit(3, 0, 12.0, '3;w=60;comment="API key"')
    assert error_from_response(_response(404, {"code": "X", "message": "x"})).rate_limit is None


def _sent(method: str = "POST", key: bool = False) -> Request:
    return Request(method, "/x", headers={"Idempotency-Key": "k"} if key else {}, replayable=key or method != "POST")


@pytest.mark.parametrize(("request_", "outcome", "attempt", "pause"), [
    (_sent(), _response(429, {}, headers={"Retry-After": "2"}), 0, 2.0),  # a refused request never counted
    (_sent(), _response(429, {}), 1, 1.0),  # no Retry-After: the backoff, doubled per attempt
    (_sent(), _response(429, {}, headers={"Retry-After": "61"}), 0, None),  # more than max_wait: raised
    (_sent(), _response(429, {}), 3, None),  # attempts used up
    (_sent(), _response(503, {}), 0, None),  # a POST without a key may have made its job
    (_sent(key=True), _response(503, {}, headers={"Retry-After": "3"}), 0, 3.0),
    (_sent("GET"), _response(502, {}), 0, 0.5),
    (_sent(), _response(500, {}), 0, None),
    (_sent(), httpx.ConnectError("refused"), 0, 0.5),  # never reached the server
    (_sent(), httpx.ReadError("lost"), 0, None),
    (_sent(key=True), httpx.ReadError("lost"), 2, 2.0),
])
def test_the_clients_own_retries(request_, outcome, attempt, pause):
    assert Retry(attempts=3, backoff=0.5, max_wait=60).pause(request_, outcome, attempt) == pause
    assert Retry().pause(request_, outcome, 0) is None  # off by default


def test_an_idempotency_key_is_made_once_per_call():
    keyed = execute_request("default/x", {"a": 1}, idempotency_key=True, wait_async=2.5, format="csv")
    assert len(keyed.headers["Idempotency-Key"]) == 32 and keyed.replayable
    assert keyed.headers["Prefer"] == "respond-async, wait=2.5" and keyed.headers["Accept"] == "text/csv"
    assert keyed.kwargs()["headers"] is keyed.headers  # each send of the Request carries the same key
    plain = execute_request("default/x", None)
    assert plain.headers == {} and not plain.replayable and plain.json == {"parameter_values": {}}
    with pytest.raises(ValueError, match="format must be one of"):
        execute_request("default/x", None, format="xlsx")


# --- webhooks --------------------------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"a-thirty-two-byte-secret-for-hmac").decode()


def _signed(body: bytes, secret: str = SECRET, msg_id: str = "msg_1", at: datetime | None = None) -> dict:
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}


def test_verify_webhook_accepts_what_standardwebhooks_signs():
    body = json.dumps({"job_id": "j1", "status": "completed"}).encode()
    headers = _signed(body)
    assert verify_webhook(headers, body, SECRET) == {"job_id": "j1", "status": "completed"}
    assert Webhook(SECRET).verify(body, headers) == verify_webhook(headers, body.decode(), SECRET)
    # header names in any case, as a list of pairs, the secret without its prefix
    assert verify_webhook([(k.title(), v) for k, v in headers.items()], body, SECRET.removeprefix("whsec_"))
    # after a rotation both secrets sign: either one verifies
    other = "whsec_" + base64.b64encode(b"the-other-secret-of-the-rotation").decode()
    both = {**headers, "webhook-signature": _signed(body, other)["webhook-signature"] + " "
            + headers["webhook-signature"]}
    assert verify_webhook(both, body, SECRET) and verify_webhook(both, body, other)


@pytest.mark.parametrize("case", ["tampered body", "old timestamp", "future timestamp", "wrong secret",
                                  "missing signature", "other id", "unknown version"])
def test_verify_webhook_refuses(case):
    body = json.dumps({"job_id": "j1", "status": "completed"}).encode()
    secret, headers = SECRET, _signed(body)
    if case == "tampered body":
        body = body.replace(b"completed", b"failed")
    elif case == "old timestamp":
        headers = _signed(body, at=datetime.now(UTC) - timedelta(minutes=6))
    elif case == "future timestamp":
        headers = _signed(body, at=datetime.now(UTC) + timedelta(minutes=6))
    elif case == "wrong secret":
        secret = "whsec_" + base64.b64encode(b"somebody-else-s-secret-32-bytes!").decode()
    elif case == "missing signature":
        del headers["webhook-signature"]
    elif case == "other id":
        headers["webhook-id"] = "msg_2"
    elif case == "unknown version":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, secret)
    if case != "missing signature":  # the reference library agrees
        with pytest.raises(Exception, match="(?i)signature|timestamp|too"):
            Webhook(secret).verify(body, headers)


@pytest.fixture
def cb_settings(stack_settings, pki):
    return stack_settings.model_copy(update={
        "callback_allow_cidrs": ["127.0.0.0/8", "::1/128"], "callback_allow_hosts": ["localhost"],
        "callback_ca_bundle": str(pki / "ca.pem"), "callback_schedule_seconds": [0, 0.3, 0.3],
        "callback_jitter": 0.0, "callback_timeout_seconds": 5.0})


async def test_a_delivered_callback_verifies(cb_settings, temporal_env, receiver):
    async with app_and_client(cb_settings, temporal_env.client) as (app, api), \
            build_query_worker(temporal_env.client, cb_settings), \
            build_callback_worker(temporal_env.client, cb_settings):
        tenant = Tenant(app, api)
        async with client_for(app, tenant) as client:
            job = await client.submit(MONTHLY, {"mes": "2026-03"}, callback_url=receiver.url("localhost"))
            result = await job.wait(timeout=60, poll_interval=0.05)

            deadline = time.monotonic() + 20
            while (await job.refresh()).callback["status"] == "pending":
                assert time.monotonic() < deadline, job.callback
                await asyncio.sleep(0.1)
            assert job.callback["status"] == "delivered"
        with session_scope(tenant.ctx.engine) as s:
            secret = webhook_secrets.current_secret(s, tenant.ctx.box, tenant.company_id)
    [req] = receiver.requests
    payload = verify_webhook(req.headers, req.body, secret)
    assert payload["job_id"] == job.job_id and payload["status"] == "completed"
    assert payload["result"]["rows"] == result.rows and req.headers["webhook-id"] == job.callback["webhook_id"]
    with pytest.raises(WebhookVerificationError):
        verify_webhook(req.headers, req.body.replace(b"completed", b"failed", 1), secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(req.headers, req.body, "whsec_" + base64.b64encode(b"x" * 32).decode())
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(req.headers, req.body, secret, now=time.time() + 301)


# --- the Jobs API, asyncio flavour, in-process -------------------------------------------------------------

def _org_client(org: Org, **kw) -> AsyncClient:
    key, secret = org.key.split(".", 1)
    return AsyncClient("http://testserver", org.slug, key, secret, **{"transport": asgi(org.app), **kw})


async def test_jobs_api_run_wait_result_and_archives(org, tmp_path):
    async with _org_client(org, application_id="app-1", client_id="client-1") as client:
        job_id = await client.run_job(REPOSITORY["id"], file=("vendas.csv", CSV), params={"a": 10, "b": 20},
                                      metadata={"origem": "cliente"})
        assert str(uuid.UUID(job_id)) == job_id
        status = await client.wait_job(job_id, timeout=60, poll_interval=0.1)
        assert status["status"] == "completed" and status["input"] == ["vendas.csv"]
        assert status["created_by"] == "jobs-user" and status["metadata"] == {"origem": "cliente"}
        assert await client.job_result(job_id) == {
            "output": {"value": 600, "more_results": "So long, and thanks for all the fish"}}
        out = await client.download_output(job_id, tmp_path)  # a folder: the server's file name
        assert out == tmp_path / f"{job_id}-output.zip"
        assert zip_entries(out)["summary.csv"].decode().splitlines()[1] == "10,20,Hyperparam_Example,1,3"
        logs = await client.download_logs(job_id, tmp_path / "logs.zip")
        assert set(zip_entries(logs)) == {"stdout.log", "stderr.log", "platform.log"}
        assert list(tmp_path.glob("*.part")) == []

        # The job as the Jobs API's raw call shows it, with the same headers.
        raw = await org.api.get(f"/api/v1/job/{job_id}", headers=org.headers(None))
        assert raw.json() == await client.job_status(job_id)

        # Runs are seen by the application and client that started them.
        with pytest.raises(NotFoundError) as err:
            await client.job_status(job_id, client_id="another-client")
        assert (err.value.status, err.value.code, err.value.message) == (404, "NOT_FOUND", "Invalid job_id")


class LosingFirstRun(httpx.AsyncBaseTransport):
    """The real transport; the answer to the first run request is lost after the server made the run."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner, self.runs, self.lost = inner, [], False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/api/v1/job/execute":
            await response.aread()
            self.runs.append((response.status_code, request.headers.get("idempotency-key")))
            if not self.lost:
                self.lost = True
                raise httpx.ReadError("connection lost after the run was made", request=request)
        return response


async def test_jobs_api_run_with_an_idempotency_key_survives_a_lost_answer(org, tmp_path):
    """The client sends the run again with the same key and the whole file (read again from its start): the
    server answers the first run's id, so there is one run."""
    csv_path = tmp_path / "vendas.csv"
    csv_path.write_bytes(CSV)
    wire = LosingFirstRun(asgi(org.app))
    async with _org_client(org, transport=wire, retries=2) as client:
        job_id = await client.run_job(REPOSITORY["id"], file=csv_path, params={"a": 1, "b": 2},
                                      idempotency_key=True)
        assert (await client.wait_job(job_id, timeout=60, poll_interval=0.1))["status"] == "completed"
        again = await client.run_job(REPOSITORY["id"], file=csv_path, params={"a": 1, "b": 2},
                                     idempotency_key=wire.runs[0][1])
        with pytest.raises(IdempotencyKeyReusedError) as reused:
            await client.run_job(REPOSITORY["id"], file=csv_path, params={"a": 9}, idempotency_key=wire.runs[0][1])
    # The server compares the file's SHA-256: a second 201 means the whole file was sent again.
    (first, key), (second, key2) = wire.runs[:2]
    assert (first, second) == (201, 201) and key == key2 and len(key) == 32
    assert again == job_id and reused.value.status == 422 and reused.value.code == "IDEMPOTENCY_KEY_REUSED"


async def test_jobs_api_failures_are_typed(org, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    async with _org_client(org) as client:
        failing = await client.run_job("falha")
        with pytest.raises(JobFailedError) as err:
            await client.wait_job(failing, timeout=60, poll_interval=0.1)
        assert err.value.job["status"] == "failed"
        with pytest.raises(JobFailedError) as err:
            await client.job_result(failing)
        assert (err.value.status, err.value.message) == (500, "Job failed")
        with pytest.raises(JobFailedError):
            await client.download_output(failing, downloads / "out.zip")
        assert list(downloads.iterdir()) == []  # nothing written, not even a partial file
        assert b"bad input" in zip_entries(await client.download_logs(failing, downloads / "l.zip"))["stderr.log"]

        slow = await client.run_job("lento", params={"pid_file": "pid.txt", "sleep": 3})  # in its own folder
        with pytest.raises(JobNotFinishedError):
            await client.job_result(slow)
        with pytest.raises(JobTimeoutError):
            await client.wait_job(slow, timeout=0.3, poll_interval=0.1)

        with pytest.raises(NotFoundError) as err:
            await client.run_job("nao-existe")
        assert err.value.message == "Invalid repository_id"
    async with _org_client(org, username="someone-else") as client:
        with pytest.raises(PermissionDeniedError):
            await client.job_status(slow)
    key, _ = org.key.split(".", 1)
    async with AsyncClient("http://testserver", org.slug, key, "wrong", transport=asgi(org.app),
                           username="jobs-user") as client:
        with pytest.raises(AuthenticationError) as err:
            await client.job_status(slow)
        assert err.value.message == "Invalid API key"


# --- the sync flavour over real HTTP to a real API process -------------------------------------------------

async def test_sync_client_over_http_to_a_real_api_process(topology, temporal_env, sqlite_url, pki, tmp_path):
    """``dataapi api`` (its embedded query worker runs the queries) and ``dataapi worker --queues jobs`` as real
    processes on the session's dev server; 3 s access tokens, no leeway."""
    topo = topology
    suffix = uuid.uuid4().hex[:8]
    settings = topo.configure(
        sqlite_url, pki, DATAAPI_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        DATAAPI_TASK_QUEUE_QUERIES=f"queries-{suffix}", DATAAPI_TASK_QUEUE_JOBS=f"jobs-{suffix}",
        DATAAPI_TASK_QUEUE_CALLBACKS=f"callbacks-{suffix}", DATAAPI_ACCESS_TOKEN_TTL_SECONDS="3",
        DATAAPI_JWT_LEEWAY_SECONDS="0", DATAAPI_LOG_LEVEL="WARNING")
    tenant = create_tenant(settings, topo.root)
    topo.spawn("api", [str(DATAAPI), "api"])
    topo.spawn("worker-jobs-1", [str(DATAAPI), "worker", "--queues", "jobs"])
    async with httpx.AsyncClient(base_url=topo.base_url, timeout=30) as http:
        await until(lambda: api_ready(http), 60, "API /readyz 200", topo)
        r = await http.post("/api/v1/auth/api-key", json=tenant.login_body())
        raw = await http.post(f"/api/v1/data-api/{SALES}/execute", headers=bearer(r.json()["access_token"]),
                              json={"parameter_values": {"data_inicio": "2026-01-01"}})
        assert raw.status_code == 200, raw.text

    def scenario() -> dict:
        rec = SyncRecording(httpx.HTTPTransport())
        out: dict = {"rec": rec}
        with Client(topo.base_url, tenant.slug, tenant.key_id, tenant.secret, transport=rec,
                    application_id="erp-app", client_id="erp-client") as client:
            out["sync"] = client.execute(SALES, data_inicio="2026-01-01")
            job = client.submit(MONTHLY, params={"mes": "2026-03"})
            out["async"] = job.wait(timeout=60, poll_interval=0.1)
            out["job"] = client.get_job(MONTHLY, job.job_id)
            time.sleep(3.2)  # the access token has expired: threads needing one at once share one refresh
            out["before_threads"] = len(rec.seen)
            with_threads: list = []
            threads = [threading.Thread(target=lambda: with_threads.append(
                client.execute(SALES, data_inicio="2026-01-01", regiao="Sul"))) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            out["threads"] = with_threads
            csv_path = tmp_path / "vendas.csv"
            csv_path.write_bytes(CSV)
            job_id = client.run_job(REPOSITORY["id"], file=csv_path, params={"a": 10, "b": 20})
            out["status"] = client.wait_job(job_id, timeout=60, poll_interval=0.2)
            out["result"] = client.job_result(job_id)
            out["output"] = client.download_output(job_id, tmp_path / "output.zip")
            out["logs"] = client.download_logs(job_id, tmp_path)
            with pytest.raises(NotFoundError):
                client.execute("default/nao-existe")
        return out

    try:
        out = await asyncio.to_thread(scenario)
    except BaseException:
        print(topo.logs())
        raise
    rec = out["rec"]
    assert out["sync"].rows == raw.json()["rows"] and out["sync"].columns == raw.json()["columns"]
    assert out["async"].row_count > 0 and out["async"].rows == out["job"].result.rows
    assert len(out["threads"]) == 6 and all(r.rows[0]["regiao"] == "Sul" for r in out["threads"])
    auth = [(p.rsplit("/", 1)[1], s) for _, p, s in rec.seen if p.startswith("/api/v1/auth/")]
    assert auth[:2] == [("api-key", 200), ("refresh", 200)] and ("api-key", 401) not in auth
    burst = rec.seen[out["before_threads"]:out["before_threads"] + 7]
    assert [p for _, p, _ in burst].count("/api/v1/auth/refresh") == 1, burst
    assert [s for s in rec.seen if s[2] == 401] == []
    assert out["status"]["status"] == "completed" and out["status"]["created_by"] == "erp"
    assert out["result"] == {"output": {"value": 600, "more_results": "So long, and thanks for all the fish"}}
    assert "summary.csv" in zip_entries(out["output"]) and out["logs"].name.endswith("-logs.zip")
    topo.check_alive()

