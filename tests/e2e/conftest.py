"""The console's end-to-end tests: Debian's Chromium driven by Playwright against a real running stack (the API and
a worker as processes, the session's Temporal dev server, PostgreSQL, an HTTPS callback receiver).

Without Chromium the tests skip, unless ``DATAAPI_REQUIRE_BROWSER=1`` (CI sets it): then they fail. Screenshots of
each page go to ``DATAAPI_CONSOLE_SCREENSHOTS`` when it names a folder (``docs/console`` refreshes the docs')."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dataapi.db import make_engine, session_scope
from dataapi.identity import passwords
from dataapi.identity import service as identity
from dataapi.statuses import UserKind
from tests.support.processes import DATAAPI, Tenant, Topology, api_ready, create_tenant, until

CHROMIUM = os.environ.get("DATAAPI_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "e2e password 123"


def _chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        message = f"Chromium is not installed ({CHROMIUM}); apt-get install chromium"
        if os.environ.get("DATAAPI_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    executable = _chromium()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


@dataclass
class Console:
    base_url: str
    tenant: Tenant
    other: str  # another company's slug, with the same endpoints
    topo: Topology
    shots: Path

    def login(self, name: str, company: str | None = None) -> dict:
        return {"company": company or self.tenant.slug, "name": name, "password": PASSWORD}


def _humans(url: str, company: str, people: dict[str, list[str]]) -> None:
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            co = identity.require_company(s, company)
            for name, policies in people.items():
                user = identity.create_user(s, co, name, policies, kind=UserKind.HUMAN)
                passwords.set_password(s, user, PASSWORD)
    finally:
        engine.dispose()


@pytest.fixture
async def console(topology, pg_url, pki, temporal_env, tmp_path):
    """The API (its embedded query worker) and a queries+callbacks worker as processes on the session's Temporal
    dev server; a tenant with the demo endpoints and data, its humans (admin, manager, viewer), another company."""
    topo = topology
    address = temporal_env.client.service_client.config.target_host
    q = uuid.uuid4().hex[:8]
    settings = topo.configure(pg_url, pki, DATAAPI_TEMPORAL_ADDRESS=address,
                              DATAAPI_TASK_QUEUE_QUERIES=f"e2e-queries-{q}",
                              DATAAPI_TASK_QUEUE_CALLBACKS=f"e2e-callbacks-{q}",
                              DATAAPI_TASK_QUEUE_JOBS=f"e2e-jobs-{q}")
    api = topo.spawn("api", [str(DATAAPI), "api"])
    topo.spawn("worker-queries-1", [str(DATAAPI), "worker", "--queues", "queries,callbacks"])
    tenant = create_tenant(settings, topo.root / "tenant")
    other = create_tenant(settings, topo.root / "other")
    _humans(pg_url, tenant.slug, {"ana": ["CompanyAdmin"], "bia": ["VisualizationManager"],
                                  "caio": ["VisualizationViewer"]})
    _humans(pg_url, other.slug, {"olga": ["CompanyAdmin"]})
    shots = Path(os.environ.get("DATAAPI_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    os.makedirs(shots, exist_ok=True)
    async with httpx.AsyncClient(base_url=topo.base_url, timeout=30) as http:
        await until(lambda: api_ready(http), 60, "API /readyz 200", topo)
    assert api.popen.poll() is None
    return Console(topo.base_url, tenant, other.slug, topo, shots)
