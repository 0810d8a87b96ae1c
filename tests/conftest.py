"""Shared fixtures: real SQLite and PostgreSQL stores, the ASGI app over httpx, identities to log in with."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from sqlalchemy import Engine

from api.app import create_app
from dataapi.db import make_engine, session_scope, upgrade
from dataapi.identity import service as identity
from dataapi.settings import Settings

# The helpers of tests/support keep their asserts' messages, and their fixtures are everyone's: the HTTPS webhook
# receiver, real processes, the moto S3 server, the Jobs API's and the callbacks' apps.
pytest.register_assert_rewrite("tests.support")
pytest_plugins = ["tests.support.receiver", "tests.support.processes", "tests.support.s3", "tests.support.jobs_api",
                  "tests.support.callbacks", "tests.support.data_api"]

PG_ADMIN_URL = os.environ.get("DATAAPI_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")


def _pg_database() -> str:
    """A fresh PostgreSQL database for this test session (dropped at exit)."""
    name = f"dataapi_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture(scope="session")
def pg_url():
    try:
        name = _pg_database()
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is required for the store tests ({PG_ADMIN_URL}): {e}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'dataapi.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """A store with no schema yet: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = _pg_database()
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param])


@pytest.fixture
def settings(tmp_path, sqlite_url) -> Settings:
    return Settings(var_dir=tmp_path / "var", database_url=sqlite_url)


@pytest.fixture
def engine(settings) -> Engine:
    engine = make_engine(settings.resolved_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings, engine):
    return create_app(settings, engine)


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.7", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class Credentials:
    company_slug: str
    api_key: str
    api_secret: str
    user_name: str

    def login_body(self) -> dict:
        return {"company_slug": self.company_slug, "api_key": self.api_key, "api_secret": self.api_secret}


def unique_slug(prefix: str = "co") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_identity(app):
    """Creates a company (or reuses one), an integration user with the given policies and an API key."""
    ctx = app.state.ctx

    def make(policies=("DataAPIConsumer",), company_slug: str | None = None) -> Credentials:
        slug = company_slug or unique_slug()
        with session_scope(ctx.engine) as s:
            company = identity.get_company(s, slug) or identity.create_company(s, slug)
            user = identity.create_user(s, company, f"integration-{uuid.uuid4().hex[:6]}", list(policies))
            key, secret = identity.create_api_key(s, ctx.hasher, company, user)
            return Credentials(slug, key.key_id, secret, user.name)

    return make


@pytest.fixture
def login(client):
    async def do(creds: Credentials) -> dict:
        r = await client.post("/api/v1/auth/api-key", json=creds.login_body())
        assert r.status_code == 200, r.text
        return r.json()

    return do


# --- Temporal: one real dev server per test session, a fresh task queue and worker per test ---------------

@pytest.fixture(scope="session")
def payload_keyset() -> str:
    """The session's payload encryption keyset: the dev server's client and every stack_settings share it."""
    from dataapi.codec import new_keyset

    return json.dumps(new_keyset())


@pytest.fixture(scope="session")
async def temporal_env(payload_keyset):
    from temporalio.testing import WorkflowEnvironment

    from cli.dev import temporal_binary
    from dataapi.converter import data_converter
    from dataapi.temporal import SEARCH_ATTRIBUTES

    # The project's converter, encryption included, as every client of ours has (dataapi.temporal.connect).
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error", data_converter=data_converter(Settings(payload_keyset=payload_keyset)))
    yield env
    await env.shutdown()


@pytest.fixture
def stack_settings(tmp_path, sqlite_url, temporal_env, payload_keyset) -> Settings:
    """Settings for a test of the whole stack: own var dir and task queue, shared store and dev server."""
    return Settings(var_dir=tmp_path / "var", database_url=sqlite_url, payload_keyset=payload_keyset,
                    temporal_address=temporal_env.client.service_client.config.target_host,
                    task_queue_queries=f"queries-{uuid.uuid4().hex[:8]}",
                    task_queue_callbacks=f"callbacks-{uuid.uuid4().hex[:8]}", query_heartbeat_seconds=2.0)


@contextlib.asynccontextmanager
async def app_and_client(settings: Settings, temporal_client):
    """An API app with its own engine, wired to the dev server, and an httpx client over ASGI."""
    engine = make_engine(settings.resolved_database_url)
    app = create_app(settings, engine, temporal_client)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        yield app, api
    engine.dispose()


@pytest.fixture
def stack_app(stack_settings, temporal_env):
    """The API app wired to the real dev server, with no worker (tests start their own)."""
    engine = make_engine(stack_settings.resolved_database_url)
    yield create_app(stack_settings, engine, temporal_env.client)
    engine.dispose()


@pytest.fixture
async def stack(stack_app, stack_settings, temporal_env):
    """The API app and a running in-process query worker, on the app's client and starting the app's sync
    queries as the API's embedded worker does (eager start, queries started beside the workflow's start)."""
    from worker import build_query_worker, query_activities

    lane = stack_app.state.ctx.sync_lane
    acts = query_activities(stack_settings, lane)
    with lane.serving(acts.start_query):
        async with build_query_worker(temporal_env.client, stack_settings, acts=acts):
            yield stack_app
