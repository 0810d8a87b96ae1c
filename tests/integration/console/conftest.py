"""Fixtures of the console's tests: human users with passwords, and a logged-in httpx client over the app."""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass

import httpx
import pytest

from dataapi.db import session_scope
from dataapi.identity import passwords
from dataapi.identity import service as identity
from dataapi.statuses import UserKind

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Human:
    company: str
    name: str
    password: str = PASSWORD


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF field in the page"
    return m.group(1)


@pytest.fixture
def make_human(app):
    """A human user with a password in a company (new unless named)."""
    def make(policies=("VisualizationViewer",), company: str | None = None) -> Human:
        slug = company or f"co-{uuid.uuid4().hex[:10]}"
        name = f"ana-{uuid.uuid4().hex[:6]}"
        with session_scope(app.state.ctx.engine) as s:
            co = identity.get_company(s, slug) or identity.create_company(s, slug)
            user = identity.create_user(s, co, name, list(policies), kind=UserKind.HUMAN)
            passwords.set_password(s, user, PASSWORD)
        return Human(slug, name)

    return make


async def log_in(client: httpx.AsyncClient, human: Human, password: str | None = None) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200, page.text
    return await client.post("/console/login", data={
        "csrf": csrf_of(page.text), "company": human.company, "name": human.name,
        "password": password if password is not None else human.password, "next": "/console/endpoints"})


@pytest.fixture
def browser_for(app):
    """``async with browser_for(human) as c``: a fresh client (its own cookie jar) logged in as ``human``."""

    @contextlib.asynccontextmanager
    async def open_(human: Human):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("198.51.100.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await log_in(c, human)
            assert r.status_code == 303, r.text
            yield c

    return open_
