"""Human login to the console: passwords, sessions (cookie, expiry, revocation), CSRF and failed-login limiting."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from dataapi.db import session_scope
from dataapi.identity import passwords, sessions
from dataapi.identity import service as identity
from dataapi.models import ConsoleSession, User
from tests.integration.console.conftest import PASSWORD, csrf_of, log_in


async def test_login_sets_a_hardened_session_cookie_and_opens_the_console(client, make_human):
    human = make_human()
    r = await log_in(client, human)
    assert r.status_code == 303 and r.headers["location"] == "/console/endpoints"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("dataapi_console="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; https sets it (test below)
    page = await client.get("/console/endpoints")
    assert page.status_code == 200 and human.name in page.text


async def test_the_cookie_is_secure_behind_https(app, make_human):
    human = make_human()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        r = await log_in(c, human)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("dataapi_console="))
    assert "Secure" in cookie


async def test_a_wrong_password_is_refused_and_pages_send_to_login(client, make_human):
    human = make_human()
    r = await log_in(client, human, "wrong password!!")
    assert r.status_code == 401 and "Wrong company, user name or password" in r.text
    page = await client.get("/console/endpoints")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/console/login?next=")


async def test_failed_logins_are_limited_but_never_the_right_password(app, client, make_human):
    app.state.ctx.limiter.max_failures = 3
    human = make_human()
    statuses = [(await log_in(client, human, "not the password")).status_code for _ in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
    limited = await log_in(client, human, "not the password")
    assert limited.headers["retry-after"].isdigit()
    assert (await log_in(client, human)).status_code == 303  # the owner still gets in


async def test_login_form_needs_its_csrf_token(client, make_human):
    human = make_human()
    await client.get("/console/login")
    r = await client.post("/console/login", data={"csrf": "forged", "company": human.company, "name": human.name,
                                                   "password": PASSWORD})
    assert r.status_code == 403


async def test_integration_users_and_unknown_users_cannot_log_in(app, client, make_human):
    human = make_human()
    with session_scope(app.state.ctx.engine) as s:
        co = identity.require_company(s, human.company)
        identity.create_user(s, co, "robot", ["VisualizationViewer"])
        with pytest.raises(identity.IdentityError):
            passwords.set_password(s, identity.require_user(s, co, "robot"), PASSWORD)
    for company, name in ((human.company, "robot"), (human.company, "nobody"), ("no-such-co", human.name)):
        page = await client.get("/console/login")
        r = await client.post("/console/login", data={"csrf": csrf_of(page.text), "company": company,
                                                       "name": name, "password": PASSWORD})
        assert r.status_code == 401


async def test_posts_without_the_sessions_csrf_token_are_refused(browser_for, make_human):
    human = make_human(["VisualizationManager"])
    async with browser_for(human) as c:
        r = await c.post("/console/endpoints/new", data={"slug": "x", "sql": "SELECT 1"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = await c.post("/console/endpoints/new", data={"slug": "x", "sql": "SELECT 1", "csrf": "forged"})
        assert r.status_code == 403


async def test_logout_ends_the_session_server_side(app, browser_for, make_human):
    human = make_human()
    async with browser_for(human) as c:
        token = c.cookies.get("dataapi_console")
        page = await c.get("/console/endpoints")
        r = await c.post("/console/logout", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
        # the old cookie, replayed, no longer opens a page
        c.cookies.set("dataapi_console", token, path="/console")
        assert (await c.get("/console/endpoints")).status_code == 303
    with session_scope(app.state.ctx.engine) as s:
        assert sessions.find_session(s, token, 3600) is None


async def test_disabling_a_user_ends_their_sessions_at_once(app, browser_for, make_human):
    human = make_human()
    async with browser_for(human) as c:
        assert (await c.get("/console/endpoints")).status_code == 200
        with session_scope(app.state.ctx.engine) as s:
            user = identity.require_user(s, identity.require_company(s, human.company), human.name)
            identity.set_user_disabled(s, user, True)
        assert (await c.get("/console/endpoints")).status_code == 303


async def test_idle_and_absolute_expiry(app, make_human):
    human = make_human()
    with session_scope(app.state.ctx.engine) as s:
        principal = passwords.authenticate_password(s, human.company, human.name, PASSWORD)
        idle_token = sessions.open_session(s, principal, "a", 3600)
        old_token = sessions.open_session(s, principal, "a", 3600)
    with session_scope(app.state.ctx.engine) as s:
        assert sessions.find_session(s, idle_token, 600) is not None
        row = s.get(ConsoleSession, sessions._id(idle_token))
        row.last_seen_at = row.last_seen_at - timedelta(seconds=601)
        old = s.get(ConsoleSession, sessions._id(old_token))
        old.expires_at = old.created_at - timedelta(seconds=1)
    with session_scope(app.state.ctx.engine) as s:
        assert sessions.find_session(s, idle_token, 600) is None
        assert sessions.find_session(s, old_token, 600) is None


async def test_passwords_are_argon2id_and_a_new_password_ends_sessions(app, make_human):
    human = make_human()
    with session_scope(app.state.ctx.engine) as s:
        user = identity.require_user(s, identity.require_company(s, human.company), human.name)
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        principal = passwords.authenticate_password(s, human.company, human.name, PASSWORD)
        token = sessions.open_session(s, principal, "a", 3600)
        passwords.set_password(s, user, "another long password")
        assert sessions.find_session(s, token, 3600) is None
        with pytest.raises(identity.IdentityError):
            passwords.set_password(s, user, "short")


async def test_an_invitation_sets_the_password_once(app, client, make_human):
    human = make_human()
    with session_scope(app.state.ctx.engine) as s:
        user = identity.require_user(s, identity.require_company(s, human.company), human.name)
        link = passwords.create_invitation(s, user)
    page = await client.get(f"/console/invitation/{link}")
    assert page.status_code == 200 and human.name in page.text
    mismatch = await client.post(f"/console/invitation/{link}", data={
        "csrf": csrf_of(page.text), "password": "a new password 1", "password_again": "different one"})
    assert mismatch.status_code == 400
    r = await client.post(f"/console/invitation/{link}", data={
        "csrf": csrf_of(page.text), "password": "a new password 1", "password_again": "a new password 1"})
    assert r.status_code == 303
    assert (await client.get(f"/console/invitation/{link}")).status_code == 404  # used up
    assert (await log_in(client, human, "a new password 1")).status_code == 303
    with session_scope(app.state.ctx.engine) as s:
        assert s.get(User, user.id).invitation_hash is None
