"""What every console page shares: the session cookie, the visitor behind it, CSRF checks, permission checks and
rendering a Jinja2 template.

A page handler is wrapped by ``page(action)``: without a live session the browser is sent to the login page;
a POST without the session's CSRF token is refused (403); a visitor whose policies do not grant ``action`` gets
403. Errors of the domain are rendered as an HTML page with their status (``handlers``)."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.context import AppContext, context
from api.errors import unavailable
from dataapi.errors import DomainError, Forbidden, Unauthorized
from dataapi.identity.sessions import Visitor, find_session
from dataapi.timestamps import iso

log = logging.getLogger("dataapi.console")
PREFIX = "/console"
COOKIE = "dataapi_console"
LOGIN_COOKIE = "dataapi_console_login"  # the login form's CSRF token, before any session exists
HERE = Path(__file__).parent

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
templates.filters["iso"] = lambda v: iso(v) if v is not None else ""

Handler = Callable[[Request], Awaitable[Response]]

# The console's menu: (label, path, action that shows it).
NAV = [
    ("Endpoints", "/endpoints", "data_api:execute"),
    ("Data", "/data", "admin:endpoints"),
    ("Jobs", "/jobs", "data_api:get_job"),
    ("Keys and users", "/users", "admin:users"),
    ("Repositories", "/repositories", "admin:repositories"),
    ("Settings", "/settings", "admin:webhooks"),
]


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https" or context(request).settings.base_url.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="lax",
                        secure=secure_cookies(request))


def render(request: Request, template: str, /, status: int = 200, **values: Any) -> HTMLResponse:
    visitor: Visitor | None = getattr(request.state, "visitor", None)
    nav = [(label, PREFIX + path) for label, path, action in NAV if visitor is not None and visitor.may(action)]
    body = templates.get_template(template).render(
        request=request, visitor=visitor, nav=nav, prefix=PREFIX, path=request.url.path,
        csrf=visitor.csrf_token if visitor else values.pop("csrf", ""), **values)
    return HTMLResponse(body, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"})


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def current_visitor(request: Request) -> Visitor | None:
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    ctx = context(request)
    return await ctx.transaction(find_session, token, ctx.settings.console_session_idle_seconds)


async def form(request: Request) -> FormData:
    """The request's form, once (the CSRF check reads it before the handler)."""
    cached = getattr(request.state, "form", None)
    if cached is None:
        cached = await request.form(max_files=4, max_fields=1000)
        request.state.form = cached
    return cached


def page(action: str | None = "data_api:execute") -> Callable[[Handler], Handler]:
    """A console page for a logged-in visitor whose policies grant ``action``; POSTs carry the CSRF token."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            visitor = await current_visitor(request)
            if visitor is None:
                if request.method != "GET":
                    raise Unauthorized("Your session has ended; log in again")
                return redirect(f"/login?next={quote(request.url.path)}")
            request.state.visitor = visitor
            if request.method == "POST":
                token = request.headers.get("x-csrf-token") or (await form(request)).get("csrf")
                if not isinstance(token, str) or not visitor.csrf_matches(token):
                    raise Forbidden("The form has expired (CSRF token missing or wrong); reload the page and retry")
            if action is not None and not visitor.may(action):
                raise Forbidden(f"Your policies do not allow this page ({action})")
            return await handler(request)

        return wrapper

    return decorate


def visitor_of(request: Request) -> Visitor:
    visitor = request.state.visitor
    assert isinstance(visitor, Visitor)
    return visitor


def ctx_of(request: Request) -> AppContext:
    return context(request)


def text(data: FormData, name: str, default: str = "") -> str:
    value = data.get(name, default)
    return value.strip() if isinstance(value, str) else default


# --- errors as pages -----------------------------------------------------------------------------------

def _error_page(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if status == 401:
        return redirect(f"/login?next={quote(request.url.path)}")
    response = render(request, "error.html", status=status, status_code=status, message=message)
    if headers:
        response.headers.update(headers)
    return response


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return _error_page(request, exc.status, exc.message, exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "This page does not exist", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
    return _error_page(request, exc.status_code, message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    down = unavailable(exc)
    if down is not None:
        return _error_page(request, 503, f"{down.dependency} is unavailable; retry in a moment")
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Internal error")


handlers: dict = {DomainError: _domain_error, HTTPException: _http_exception, Exception: _unexpected}
