"""Logging in and out of the console, and accepting an invitation (setting one's password).

The login form carries a CSRF token of its own (a cookie and a hidden field that must match), since no session
exists yet. A correct password is never refused; failures are counted like API keys' (``FailureLimiter``, per
company/user and address) and answered 429 once over budget."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    current_visitor,
    form,
    new_token,
    redirect,
    render,
    set_cookie,
    text,
)
from api.context import context
from api.requests import client_address
from dataapi.errors import Forbidden, InvalidDefinition
from dataapi.identity import passwords, sessions
from dataapi.identity.service import AuthFailed, Principal


def _next(raw: str) -> str:
    """Where to go after login: a path inside the console, never another site."""
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith(PREFIX + "/") or "\\" in raw or raw.startswith("//"):
        return PREFIX + "/"
    return raw


def _login_form(request: Request, status: int = 200, error: str = "", **values: str) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or new_token()
    response = render(request, "login.html", status=status, error=error, csrf=token,
                      next=_next(values.pop("next", request.query_params.get("next", ""))), **values)
    set_cookie(request, response, LOGIN_COOKIE, token)
    return response


async def login_page(request: Request) -> Response:
    if await current_visitor(request) is not None:
        return redirect("/")
    return _login_form(request)


async def login(request: Request) -> Response:
    data = await form(request)
    token = data.get("csrf")
    if not isinstance(token, str) or not token or token != request.cookies.get(LOGIN_COOKIE):
        raise Forbidden("The login form has expired; reload the page and retry")
    company, name, password = text(data, "company"), text(data, "name"), str(data.get("password") or "")
    target = _next(text(data, "next"))
    ctx, address = context(request), client_address(request)
    limiter_key = f"human:{company}/{name}"

    def authenticate(session: Session) -> tuple[Principal, str]:
        principal = passwords.authenticate_password(session, company, name, password)
        sessions.purge_ended_sessions(session)  # rows of sessions long over, anyone's
        return principal, sessions.open_session(session, principal, address,
                                                ctx.settings.console_session_absolute_seconds)

    try:
        _principal, session_token = await ctx.transaction(authenticate)
    except AuthFailed:
        wait = ctx.limiter.login_failed(address, limiter_key)
        if wait is not None:
            response = _login_form(request, 429, f"Too many failed attempts; retry in {wait} s",
                                   company=company, name=name, next=target)
            response.headers["Retry-After"] = str(wait)
            return response
        return _login_form(request, 401, "Wrong company, user name or password", company=company, name=name,
                           next=target)
    ctx.limiter.login_succeeded(address, limiter_key)
    response = redirect(target.removeprefix(PREFIX) or "/")
    set_cookie(request, response, COOKIE, session_token)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


async def logout(request: Request) -> Response:
    visitor = await current_visitor(request)
    if visitor is not None:
        token = (await form(request)).get("csrf")
        if not isinstance(token, str) or not visitor.csrf_matches(token):
            raise Forbidden("The form has expired; reload the page and retry")
        await context(request).transaction(sessions.end_session, request.cookies.get(COOKIE, ""))
    response = redirect("/login")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


async def invitation_page(request: Request) -> Response:
    token = request.path_params["token"]
    user = await context(request).transaction(passwords.invited_user, token)
    if user is None:
        return render(request, "error.html", status=404, status_code=404,
                      message="This invitation link is invalid or has expired; ask an admin for a new one")
    csrf = request.cookies.get(LOGIN_COOKIE) or new_token()
    response = render(request, "invitation.html", csrf=csrf, user_name=user.name, error="")
    set_cookie(request, response, LOGIN_COOKIE, csrf)
    return response


async def accept_invitation(request: Request) -> Response:
    data = await form(request)
    csrf = data.get("csrf")
    if not isinstance(csrf, str) or not csrf or csrf != request.cookies.get(LOGIN_COOKIE):
        raise Forbidden("The form has expired; reload the page and retry")
    password, again = str(data.get("password") or ""), str(data.get("password_again") or "")
    token = request.path_params["token"]
    ctx = context(request)
    try:
        if password != again:
            raise InvalidDefinition("the two passwords differ")
        await ctx.transaction(passwords.accept_invitation, token, password)
    except InvalidDefinition as e:
        user = await ctx.transaction(passwords.invited_user, token)
        return render(request, "invitation.html", status=400, csrf=csrf, user_name=user.name if user else "",
                      error=e.message)
    return redirect("/login?done=password")


routes = [
    Route(PREFIX + "/login", login_page, methods=["GET"]),
    Route(PREFIX + "/login", login, methods=["POST"]),
    Route(PREFIX + "/logout", logout, methods=["POST"]),
    Route(PREFIX + "/invitation/{token}", invitation_page, methods=["GET"]),
    Route(PREFIX + "/invitation/{token}", accept_invitation, methods=["POST"]),
]
