"""/api/v1/auth over HTTP: API-key login, refresh rotation, permissions, failure rate limiting, and what the
store and the logs keep of secrets and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import uuid

import httpx
import pytest
from sqlalchemy import MetaData, select

from api.app import create_app
from dataapi.db import make_engine, session_scope
from dataapi.identity import service as identity
from dataapi.identity.policies import ACTIONS
from dataapi.identity.ratelimit import FailureLimiter
from dataapi.settings import Settings
from tests.conftest import Credentials, unique_slug
from tests.support.errors import error_body

LOGIN, REFRESH, PERMISSIONS = "/api/v1/auth/api-key", "/api/v1/auth/refresh", "/api/v1/auth/permissions"
PAIR_KEYS = {"access_token", "refresh_token", "access_token_expires_in", "refresh_token_expires_in", "user"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def client_for(app, address: str = "198.51.100.1"):
    """A client of ``app`` from ``address``; app exceptions are raised, so a 500 fails the test loudly."""
    transport = httpx.ASGITransport(app=app, client=(address, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def new_identity(app, policies=("DataAPIConsumer",), company_slug: str | None = None) -> Credentials:
    ctx = app.state.ctx
    slug = company_slug or unique_slug()
    with session_scope(ctx.engine) as s:
        company = identity.get_company(s, slug) or identity.create_company(s, slug)
        user = identity.create_user(s, company, f"integration-{uuid.uuid4().hex[:6]}", list(policies))
        key, secret = identity.create_api_key(s, ctx.hasher, company, user)
        return Credentials(slug, key.key_id, secret, user.name)


def disable_user(app, creds: Credentials) -> None:
    with session_scope(app.state.ctx.engine) as s:
        user = identity.get_user(s, identity.require_company(s, creds.company_slug), creds.user_name)
        identity.set_user_disabled(s, user, True)


def revoke_key(app, creds: Credentials) -> None:
    with session_scope(app.state.ctx.engine) as s:
        identity.revoke_api_key(s, creds.api_key)


@pytest.fixture
def db_app(db_url, tmp_path):
    """The app over the parametrized store: once on SQLite, once on PostgreSQL."""
    engine = make_engine(db_url)
    yield create_app(Settings(var_dir=tmp_path / "var", database_url=db_url), engine)
    engine.dispose()


@pytest.fixture
def limited_app(settings, engine):
    """The app with 3 failures allowed per 1 s window (same store and keys as ``app``)."""
    return create_app(settings.model_copy(update={"auth_max_failures": 3, "auth_failure_window_seconds": 1}),
                      engine)


# --- login -----------------------------------------------------------------------------------------------

async def test_login_returns_the_documented_pair(client, app, make_identity):
    creds = make_identity(policies=("DataAPIConsumer",))
    r = await client.post(LOGIN, json=creds.login_body())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    pair = r.json()
    assert set(pair) == PAIR_KEYS
    assert pair["access_token_expires_in"] == 600 and pair["refresh_token_expires_in"] == 604_800
    assert pair["user"] == {
        "id": pair["user"]["id"], "name": creds.user_name, "kind": "integration",
        "company_slug": creds.company_slug, "api_key": creds.api_key, "policies": ["DataAPIConsumer"],
        "actions": ["data_api:execute", "data_api:get_job"],
    }
    tokens = app.state.ctx.tokens
    access = tokens.verify(pair["access_token"], "access")
    assert access.user_id == pair["user"]["id"] and access.company_slug == creds.company_slug
    assert tokens.verify(pair["refresh_token"], "refresh").family
    assert creds.api_secret not in r.text


async def test_every_refused_login_looks_the_same(client, app, make_identity):
    creds = make_identity()
    other = make_identity()
    revoked, disabled = make_identity(), make_identity()
    for c in (revoked, disabled):  # both work until revoked or disabled
        assert (await client.post(LOGIN, json=c.login_body())).status_code == 200
    revoke_key(app, revoked)
    disable_user(app, disabled)

    attempts = {
        "unknown company": {**creds.login_body(), "company_slug": unique_slug()},
        "malformed company": {**creds.login_body(), "company_slug": "Not A Slug"},
        "company of another key": {**creds.login_body(), "company_slug": other.company_slug},
        "unknown key": {**creds.login_body(), "api_key": "s42_" + "A" * 20},
        "malformed key": {**creds.login_body(), "api_key": "not-a-key"},
        "wrong secret": {**creds.login_body(), "api_secret": other.api_secret},
        "revoked key": revoked.login_body(),
        "disabled user": disabled.login_body(),
    }
    answers = {}
    for cause, body in attempts.items():
        r = await client.post(LOGIN, json=body)
        answers[cause] = (r.status_code, error_body(r), r.headers.get("www-authenticate"))
    assert answers["wrong secret"] == (401, {"code": "UNAUTHORIZED", "message": "Invalid credentials"}, "Bearer")
    assert all(a == answers["wrong secret"] for a in answers.values()), answers


GOOD = {"company_slug": "acme", "api_key": "s42_" + "A" * 20, "api_secret": "x"}
BAD_REQUESTS = {
    "empty body": (b"", "application/json"),
    "malformed json": (b'{"company_slug": "acme",', "application/json"),
    "invalid utf-8": (b'{"company_slug": "\xff"}', "application/json"),
    "array body": (b"[1, 2]", "application/json"),
    "string body": (b'"acme"', "application/json"),
    "null body": (b"null", "application/json"),
    "number body": (b"1e999", "application/json"),
    "deep nesting": (b'{"a":' * 40 + b"1" + b"}" * 40, "application/json"),
    "text/plain": (b'{"company_slug": "acme"}', "text/plain"),
    "form": (b"company_slug=acme&api_key=x&api_secret=y", "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("path", [LOGIN, REFRESH])
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_malformed_bodies_are_4xx_in_the_error_shape(client, path, case):
    content, ctype = BAD_REQUESTS[case]
    r = await client.post(path, content=content, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert set(r.json()) == {"code", "message", "request_id"} and r.json()["code"]
    if ctype != "application/json":
        assert r.status_code == 415


@pytest.mark.parametrize("change", [
    {"company_slug": None}, {"api_key": None}, {"api_secret": None}, {"company_slug": ""}, {"api_secret": 42},
    {"api_key": ["s42_x"]}, {"api_secret": {"x": 1}}, {"company_slug": "a" * 64}, {"api_key": "s42_\x00"},
    {"api_secret": "x" * 257},
], ids=repr)
async def test_missing_or_invalid_login_fields_are_400(client, change):
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    r = await client.post(LOGIN, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "INVALID_REQUEST" and set(r.json()) == {"code", "message", "request_id"}


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": 1}, {"token": "x"}], ids=repr)
async def test_missing_refresh_token_is_400(client, body):
    r = await client.post(REFRESH, json=body)
    assert r.status_code == 400 and set(r.json()) == {"code", "message", "request_id"}


@pytest.mark.parametrize("path", [LOGIN, REFRESH])
async def test_body_over_the_limit_is_413(client, settings, path):
    limit = settings.max_body_bytes
    big = b'{"pad": "' + b"x" * limit + b'"}'
    r = await client.post(path, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(big), 65_536):
            yield big[i:i + 65_536]

    r = await client.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"

    fits = b'{"pad": "' + b"x" * (limit - 20) + b'"}'
    r = await client.post(path, content=fits, headers={"content-type": "application/json"})
    assert r.status_code == 400  # read, then refused for its missing fields


# --- rate limiting: only failing attempts are counted, slowed or refused -----------------------------------

JOB_PROBE = "/api/v1/job/00000000-0000-0000-0000-000000000000/result"  # a 404 once the key is accepted


def jobs_headers(creds: Credentials, secret: str | None = None, key_id: str | None = None) -> dict:
    return {"username": creds.user_name, "organization_id": creds.company_slug, "application_id": "app",
            "client_id": "client", "x-api-key": f"{key_id or creds.api_key}.{secret or creds.api_secret}"}


async def test_wrong_secrets_for_a_key_never_lock_its_owner_out(app):
    """The default budget (10 per key id and address): ten wrong secrets for K from X, then the owner's correct
    secret answers 200 from Y and from X too. Only the eleventh wrong one is refused, with 429 Retry-After."""
    creds = new_identity(app)
    wrong = {**creds.login_body(), "api_secret": "wrong-secret"}
    async with client_for(app, "192.0.2.1") as x, client_for(app, "192.0.2.2") as y:
        for _ in range(10):
            assert (await x.post(LOGIN, json=wrong)).status_code == 401
        r = await x.post(LOGIN, json=wrong)
        assert r.status_code == 429, r.text
        assert error_body(r) == {"code": "RATE_LIMITED", "message": "Too many failed attempts; retry later"}
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert (await y.post(LOGIN, json=creds.login_body())).status_code == 200
        assert (await y.post(LOGIN, json=wrong)).status_code == 401  # Y's own pair is untouched
        assert (await x.post(LOGIN, json=wrong)).status_code == 429  # still over budget from X
        assert (await x.post(LOGIN, json=creds.login_body())).status_code == 200
        assert (await x.post(LOGIN, json=wrong)).status_code == 401  # the owner's success cleared X's pair


async def test_wrong_secrets_for_many_keys_from_one_address_never_refuse_a_correct_one(app):
    creds = new_identity(app)
    async with client_for(app, "192.0.2.3") as x:
        for i in range(10):
            body = {**creds.login_body(), "api_key": f"s42_{i:020d}"}  # each on another key id
            assert (await x.post(LOGIN, json=body)).status_code == 401
        for _ in range(10):
            assert (await x.post(LOGIN, json={**creds.login_body(), "api_secret": "wrong"})).status_code == 401
        assert (await x.post(LOGIN, json=creds.login_body())).status_code == 200


async def test_an_address_spraying_key_ids_is_refused_past_ten_times_the_budget(limited_app):
    """3 per pair: an address may fail 30 times across key ids; the 31st failure is a 429, a correct secret
    from that address still logs in, and another address is unaffected."""
    creds = new_identity(limited_app)
    async with client_for(limited_app, "192.0.2.10") as a, client_for(limited_app, "192.0.2.11") as b:
        for i in range(30):
            body = {**creds.login_body(), "api_key": f"s42_{i:020d}"}
            assert (await a.post(LOGIN, json=body)).status_code == 401, i
        r = await a.post(LOGIN, json={**creds.login_body(), "api_key": f"s42_{99:020d}"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert (await a.post(LOGIN, json=creds.login_body())).status_code == 200
        assert (await b.post(LOGIN, json={**creds.login_body(), "api_secret": "wrong"})).status_code == 401

        await asyncio.sleep(1.05)  # the 1 s window passes
        assert (await a.post(LOGIN, json={**creds.login_body(), "api_secret": "wrong"})).status_code == 401


async def test_the_answers_never_tell_whether_a_key_exists(limited_app):
    """Wrong secrets for an existing key and for a key id nobody holds: the same statuses, bodies and headers."""
    creds = new_identity(limited_app)
    answers = []
    for n, key_id in enumerate((creds.api_key, "s42_" + "Q" * 20)):
        async with client_for(limited_app, f"192.0.2.{60 + n}") as c:
            seen = []
            for _ in range(5):
                r = await c.post(LOGIN, json={**creds.login_body(), "api_key": key_id, "api_secret": "wrong"})
                seen.append((r.status_code, error_body(r), r.headers.get("retry-after")))
            answers.append(seen)
    assert [s for s, _, _ in answers[0]] == [401, 401, 401, 429, 429]
    assert answers[0] == answers[1]


async def test_failures_spread_over_addresses_do_not_limit_a_key(limited_app):
    creds = new_identity(limited_app)
    wrong = {**creds.login_body(), "api_secret": "wrong"}
    for i in range(6):
        async with client_for(limited_app, f"192.0.2.{20 + i}") as c:
            assert (await c.post(LOGIN, json=wrong)).status_code == 401
    async with client_for(limited_app, "192.0.2.30") as c:
        assert (await c.post(LOGIN, json=wrong)).status_code == 401
        assert (await c.post(LOGIN, json=creds.login_body())).status_code == 200


async def test_forwarded_address_is_the_one_the_proxy_saw(settings, engine):
    """Behind a proxy, the client can put anything in front of X-Forwarded-For; only the last entry counts."""
    app = create_app(settings.model_copy(update={"auth_max_failures": 3, "trust_forwarded_for": True}), engine)
    creds = new_identity(app)
    wrong = {**creds.login_body(), "api_secret": "wrong"}
    async with client_for(app, "10.0.0.1") as proxy:
        for i in range(3):
            forwarded = {"x-forwarded-for": f"203.0.113.{i}, 192.0.2.50"}
            assert (await proxy.post(LOGIN, json=wrong, headers=forwarded)).status_code == 401
        forwarded = {"x-forwarded-for": "203.0.113.99, 192.0.2.50"}
        assert (await proxy.post(LOGIN, json=wrong, headers=forwarded)).status_code == 429
        assert (await proxy.post(LOGIN, json=creds.login_body(), headers=forwarded)).status_code == 200
        other = {"x-forwarded-for": "192.0.2.51"}  # another client behind the same proxy
        assert (await proxy.post(LOGIN, json=wrong, headers=other)).status_code == 401


async def test_jobs_api_key_failures_never_lock_its_owner_out(app):
    """The same for the Jobs API's x-api-key: ten wrong secrets for K from X, the eleventh is 429 with
    Retry-After in the seed's shape; the owner's key is accepted from Y and from X (404: no such job)."""
    creds = new_identity(app, policies=("JobsAPIConsumer",))
    async with client_for(app, "192.0.2.70") as x, client_for(app, "192.0.2.71") as y:
        for _ in range(10):
            r = await x.get(JOB_PROBE, headers=jobs_headers(creds, secret="wrong"))
            assert (r.status_code, error_body(r)) == (401, {"error": "Invalid API key"})
        r = await x.get(JOB_PROBE, headers=jobs_headers(creds, secret="wrong"))
        assert (r.status_code, error_body(r)) == (429, {"error": "Too many failed attempts; retry later"})
        assert 1 <= int(r.headers["retry-after"]) <= 60
        for c in (y, x):
            r = await c.get(JOB_PROBE, headers=jobs_headers(creds))
            assert (r.status_code, error_body(r)) == (404, {"error": "Invalid job_id"})
        # many key ids from one address, then the owner's key from there
        for i in range(10):
            r = await y.get(JOB_PROBE, headers=jobs_headers(creds, key_id=f"s42_{i:020d}", secret="wrong"))
            assert r.status_code == 401
        assert (await y.get(JOB_PROBE, headers=jobs_headers(creds))).status_code == 404


async def test_login_and_jobs_api_failures_count_on_the_same_pair(limited_app):
    """A wrong x-api-key and a wrong login for the same key id from the same address add up."""
    creds = new_identity(limited_app, policies=("JobsAPIConsumer",))
    async with client_for(limited_app, "192.0.2.80") as c:
        for _ in range(2):
            assert (await c.get(JOB_PROBE, headers=jobs_headers(creds, secret="wrong"))).status_code == 401
        assert (await c.post(LOGIN, json={**creds.login_body(), "api_secret": "wrong"})).status_code == 401
        assert (await c.post(LOGIN, json={**creds.login_body(), "api_secret": "wrong"})).status_code == 429
        assert (await c.get(JOB_PROBE, headers=jobs_headers(creds, secret="wrong"))).status_code == 429
        assert (await c.get(JOB_PROBE, headers=jobs_headers(creds))).status_code == 404


async def test_refresh_failures_are_limited_but_a_valid_token_is_always_taken(limited_app):
    creds = new_identity(limited_app)
    async with client_for(limited_app, "192.0.2.40") as c:
        pair = (await c.post(LOGIN, json=creds.login_body())).json()
        for _ in range(3):
            assert (await c.post(REFRESH, json={"refresh_token": "not.a.token"})).status_code == 401
        r = await c.post(REFRESH, json={"refresh_token": "not.a.token"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert (await c.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).status_code == 200


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_window_slides():
    clock = Clock()
    limiter = FailureLimiter(3, 10, clock=clock)
    for t in (0, 1, 2):
        clock.now = 1000 + t
        assert limiter.login_failed("a", "k") is None
    assert limiter.login_failed("a", "k") == 8  # the oldest failure leaves the window at t=10
    assert limiter.login_failed("b", "k") is None  # another address, another pair
    assert limiter.login_failed("a", "other") is None  # the address has room for 30
    clock.now = 1009.5
    assert limiter.login_failed("a", "k") == 1
    clock.now = 1010
    assert limiter.login_failed("a", "k") is None  # counted at t=10: leaves at 20
    assert limiter.login_failed("a", "k") == 1  # t=1 leaves at 11


def test_limiter_success_clears_the_pair_only():
    clock = Clock()
    limiter = FailureLimiter(2, 10, clock=clock)
    for i in range(18):
        assert limiter.login_failed("a", f"k{i}") is None
    assert limiter.login_failed("a", "k0") is None  # the address's 19th
    assert limiter.login_failed("a", "k0") == 10  # k0 from a: 2 failures
    limiter.login_succeeded("a", "k0")
    assert limiter.login_failed("a", "k0") is None  # the 20th failure of the address
    assert limiter.login_failed("a", "k99") == 10  # the address's 20 stay: success bought no more guesses


def test_limiter_retry_after_is_enough_when_failures_overshoot():
    """Failures recorded without the check (fail()) can exceed the budget: waiting Retry-After is then enough."""
    clock = Clock()
    limiter = FailureLimiter(2, 10, clock=clock)
    for t in (0, 5, 6):
        clock.now = 1000 + t
        limiter.fail("pair:k")
    wait = limiter.retry_after("pair:k")
    assert wait == 9  # until the failure at t=5 leaves the window
    clock.now += wait - 0.5
    assert limiter.retry_after("pair:k") is not None
    clock.now += 0.5
    assert limiter.retry_after("pair:k") is None


def test_concurrent_failures_never_overshoot_the_budget():
    limiter = FailureLimiter(5, 60)
    results: list[int | None] = []
    lock = threading.Lock()

    def attempt():
        r = limiter.login_failed("a", "k")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(None) == 5 and len(results) == 50


# --- refresh ---------------------------------------------------------------------------------------------

async def test_refresh_rotates_the_pair(client, make_identity, login):
    pair = await login(make_identity())
    r = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    new = r.json()
    assert set(new) == PAIR_KEYS and new["user"] == pair["user"]
    assert new["access_token"] != pair["access_token"] and new["refresh_token"] != pair["refresh_token"]
    assert (await client.get(PERMISSIONS, headers=bearer(new["access_token"]))).status_code == 200

    r = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"


async def test_reusing_a_refresh_token_revokes_its_family(client, make_identity, login):
    creds = make_identity()
    first = await login(creds)
    bystander = await login(creds)  # another session of the same key: its own family
    second = (await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})).json()
    third = (await client.post(REFRESH, json={"refresh_token": second["refresh_token"]})).json()

    r = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = await client.post(REFRESH, json={"refresh_token": third["refresh_token"]})
    assert r.status_code == 401, "the newest token of a reused family must be revoked"

    r = await client.post(REFRESH, json={"refresh_token": bystander["refresh_token"]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("withdraw", [disable_user, revoke_key])
async def test_refresh_fails_once_user_disabled_or_key_revoked(client, app, make_identity, login, withdraw):
    creds = make_identity()
    pair = await login(creds)
    r = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200
    withdraw(app, creds)
    r = await client.post(REFRESH, json={"refresh_token": r.json()["refresh_token"]})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"


async def test_access_and_refresh_tokens_are_not_interchangeable(client, make_identity, login):
    pair = await login(make_identity())
    r = await client.post(REFRESH, json={"refresh_token": pair["access_token"]})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = await client.get(PERMISSIONS, headers=bearer(pair["refresh_token"]))
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    # both still work for their own purpose
    assert (await client.get(PERMISSIONS, headers=bearer(pair["access_token"]))).status_code == 200
    assert (await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).status_code == 200


async def test_concurrent_refreshes_of_one_token_cannot_both_succeed(db_app):
    """Over HTTP, on SQLite and PostgreSQL: the handlers run in threads, so the requests really overlap."""
    creds = new_identity(db_app)
    async with client_for(db_app) as c:
        for _ in range(4):
            pair = (await c.post(LOGIN, json=creds.login_body())).json()
            body = {"refresh_token": pair["refresh_token"]}
            answers = await asyncio.gather(*(c.post(REFRESH, json=body) for _ in range(3)))
            assert sorted(r.status_code for r in answers) == [200, 401, 401], [r.text for r in answers]


# --- permissions -----------------------------------------------------------------------------------------

DATA_API = {"data_api:execute", "data_api:get_job"}


@pytest.mark.parametrize("policies, expected", [
    (["VisualizationViewer"], DATA_API),
    (["VisualizationManager"], DATA_API | {"admin:endpoints"}),
    (["DataAPIConsumer"], DATA_API),
    (["CompanyAdmin"], set(ACTIONS)),
    (["DataAPIConsumer", "VisualizationManager"], DATA_API | {"admin:endpoints"}),
    ([], set()),
])
async def test_permissions_list_the_callers_actions(client, make_identity, login, policies, expected):
    creds = make_identity(policies=policies)
    pair = await login(creds)
    r = await client.get(PERMISSIONS, headers=bearer(pair["access_token"]))
    assert r.status_code == 200
    body = r.json()
    assert body == {"user_id": pair["user"]["id"], "company_slug": creds.company_slug,
                    "actions": sorted(expected)}
    assert pair["user"]["actions"] == sorted(expected)


# --- nothing secret kept in the clear --------------------------------------------------------------------

def dump_store(engine) -> list[str]:
    """Every value of every column of every table, as text."""
    meta = MetaData()
    meta.reflect(engine)
    values = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                values.extend(str(v) for v in row if v is not None)
    return values


async def login_refresh_and_fail(app) -> tuple[Credentials, list[str]]:
    creds = new_identity(app)
    async with client_for(app) as c:
        pair = (await c.post(LOGIN, json=creds.login_body())).json()
        refreshed = (await c.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).json()
        assert refreshed.keys() == PAIR_KEYS
        wrong = {**creds.login_body(), "api_secret": creds.api_secret[::-1]}
        assert (await c.post(LOGIN, json=wrong)).status_code == 401
        assert (await c.post(REFRESH, json={"refresh_token": pair["refresh_token"]})).status_code == 401  # reuse
    secrets_ = [creds.api_secret, wrong["api_secret"], pair["access_token"], pair["refresh_token"],
                refreshed["access_token"], refreshed["refresh_token"]]
    return creds, secrets_


async def test_store_keeps_no_secret_or_token_in_clear(db_app):
    creds, secrets_ = await login_refresh_and_fail(db_app)
    values = dump_store(db_app.state.ctx.engine)
    assert creds.api_key in values  # the dump does see this login's rows
    refresh_jti = db_app.state.ctx.tokens.verify(secrets_[-1], "refresh").jti
    assert refresh_jti in values
    digests = {hashlib.sha256(creds.api_secret.encode()).hexdigest(),
               hashlib.sha256(f"{creds.api_key}:{creds.api_secret}".encode()).hexdigest()}
    for value in values:
        for s in secrets_:
            assert s not in value
        assert value not in digests  # the hash is keyed, not a plain digest of the secret


async def test_logs_keep_no_secret_or_token(app, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # SQL and its parameters too
    _, secrets_ = await login_refresh_and_fail(app)
    assert any("refused" in r.getMessage() for r in caplog.records)  # the capture does see the auth logs
    assert any("reuse" in r.getMessage() for r in caplog.records)
    text = caplog.text + "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for s in secrets_:
        assert s not in text
        assert s[:24] not in text
