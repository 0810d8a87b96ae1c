"""The Data API as its tests drive it: a company with the demo data and endpoints (``Tenant``), and the calls a
client makes (execute, poll until the job is done)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest
import yaml

from activities.duck.versions import load_file
from cli.demo import endpoint_file, write_sales_csv
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import find_endpoint, upsert_endpoint
from dataapi.data_api.share_contexts import create_share_context
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.settings import Settings
from tests.conftest import unique_slug
from tests.support.s3 import CREDENTIALS, new_bucket

# Under a second of DuckDB work: beyond the 0.2 s local budget the async-path tests give, well within the timeout.
SECOND_OF_WORK = "SELECT count(*) AS n FROM range(20000) a, range(20000) b WHERE a.range * b.range = -1"
# Many seconds of DuckDB work: a query caught running, timed out or cancelled.
SLOW_SQL = "SELECT count(*) AS n FROM range(100000) a, range(100000) b WHERE a.range * b.range = -1"


class Tenant:
    """A company with the demo data and endpoints, and helpers to call the API as one of its users."""

    def __init__(self, app, client: httpx.AsyncClient):
        self.app, self.client = app, client
        self.ctx = app.state.ctx
        self.slug = unique_slug("t")
        with session_scope(self.ctx.engine) as s:
            company = identity.create_company(s, self.slug)
            self.company_id = company.id
            for d in yaml.safe_load(endpoint_file().read_text())["endpoints"]:
                upsert_endpoint(s, company, self._def(d))
        settings = self.ctx.settings
        csv = write_sales_csv(settings.var_dir / f"{self.slug}.csv", rows=2000)
        load_file(settings.resolved_data_dir, self.slug, "vendas", csv)

    def _def(self, d: dict):
        s = self.ctx.settings
        return parse_definition(d, s.default_max_rows, s.max_rows_cap)

    def endpoint(self, **d) -> None:
        with session_scope(self.ctx.engine) as s:
            company = identity.get_company(s, self.slug)
            upsert_endpoint(s, company, self._def(d))

    def user(self, policies=("DataAPIConsumer",)) -> tuple[str, str, str]:
        with session_scope(self.ctx.engine) as s:
            company = identity.get_company(s, self.slug)
            user = identity.create_user(s, company, f"u-{uuid.uuid4().hex[:6]}", list(policies))
            key, secret = identity.create_api_key(s, self.ctx.hasher, company, user)
            return user.name, key.key_id, secret

    async def token(self, policies=("DataAPIConsumer",), user=None) -> str:
        _, key, secret = user or self.user(policies)
        r = await self.client.post("/api/v1/auth/api-key",
                                   json={"company_slug": self.slug, "api_key": key, "api_secret": secret})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def share(self, user_name: str, rules: dict, endpoint: str | None = None) -> None:
        with session_scope(self.ctx.engine) as s:
            company = identity.get_company(s, self.slug)
            ep = find_endpoint(s, company.id, *endpoint.split("/")) if endpoint else None
            create_share_context(s, company, rules, user_name=user_name, endpoint=ep)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def execute(api, token, endpoint, params=None, **extra):
    body = {"parameter_values": params} if params is not None else {}
    return await api.post(f"/api/v1/data-api/{endpoint}/execute", json={**body, **extra}, headers=bearer(token))


async def wait_job(api, token, polling_url, within=30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        r = await api.get(polling_url, headers=bearer(token))
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] != "processing":
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job still processing: {job}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def served(app):
    """An httpx client of the app, inside its lifespan (its embedded query worker running)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
            yield api


@pytest.fixture
async def api(stack):
    """An HTTP client of the session's whole stack (the app with its embedded query worker)."""
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as c:
        yield c


@pytest.fixture
def tenant(stack, api) -> Tenant:
    return Tenant(stack, api)


# The stack on each pairing of metadata store and artifact store: a module's ``stack_settings`` fixture, declared
# with ``@pytest.fixture(**ON_EACH_STORE)``, returns ``settings_on_store(...)``.
ON_EACH_STORE = {"params": [("sqlite", "local"), ("postgresql", "s3")], "ids": ["sqlite-local", "postgresql-s3"]}


def settings_on_store(request, tmp_path, temporal_env, payload_keyset, monkeypatch, **extra) -> Settings:
    """The stack's settings on the store pairing of ``request.param`` (an S3 bucket of its own on the moto server),
    with fresh task queues and ``extra``."""
    database, store = request.param
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url"}[database])
    artifact_store = ""
    if store == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["access_key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["secret_key"])
        artifact_store = f"s3://{new_bucket(endpoint)}/a?endpoint={endpoint}&region=us-east-1"
    return Settings(var_dir=tmp_path / "var", database_url=url, payload_keyset=payload_keyset,
                    artifact_store=artifact_store,
                    temporal_address=temporal_env.client.service_client.config.target_host,
                    task_queue_queries=f"queries-{uuid.uuid4().hex[:8]}",
                    task_queue_callbacks=f"callbacks-{uuid.uuid4().hex[:8]}", **extra)
