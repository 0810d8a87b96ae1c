"""The one error model of the HTTP APIs: services raise ``dataapi.errors.DomainError`` (status, code, message);
each API renders it in its dialect, in one place: the exception handlers of its mount (``api/mounts.py``).

- Data API, Admin API, Auth API and the routes outside any API: ``{"code": ..., "message": ..., "request_id": ...}``.
- Jobs API (the vBrain dialect): ``{"error": ..., "request_id": ...}`` (the contract's ``error``, plus the id).

``request_id`` is the request's ``X-Request-Id`` (``api/request_id.py``), the key to the operator's log lines.

Each dialect answers the same four kinds of failure: a domain error (its status), a routing error (404/405 inside
the mount), a dependency that does not answer (503, which callers may retry) and anything unexpected (a bare 500
that never shows internals; the operator's log has the exception)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from temporalio.service import RPCError, RPCStatusCode

from dataapi import db
from dataapi.errors import DomainError, Unavailable
from dataapi.logs import request_id

log = logging.getLogger("dataapi.api")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(DomainError):
    """A ``DomainError`` spelt status first, as the HTTP layer writes it: ``ApiError(404, "NOT_FOUND", "...")``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message, status=status, code=code, headers=headers)


def unauthorized(message: str = "Missing or invalid token") -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, {"WWW-Authenticate": "Bearer"})


# --- the two dialects ----------------------------------------------------------------------------------

Body = Callable[[str, str], dict]


def data_body(code: str, message: str) -> dict:
    return _with_request_id({"code": code, "message": message})


def jobs_body(_code: str, message: str) -> dict:
    return _with_request_id({"error": message})


def _with_request_id(body: dict) -> dict:
    rid = request_id.get()
    if rid is not None:
        body["request_id"] = rid
    return body


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 400: "BAD_REQUEST"}
TEMPORAL_CONNECT_FAILED = "Failed client connect"  # the SDK's lazy client raises a bare RuntimeError so worded


def unavailable(exc: Exception) -> Unavailable | None:
    """The dependency ``exc`` says is unreachable (a restart, a failover), as the domain's ``Unavailable``; None
    for any other error. The SDKs raise their own types, named here and nowhere else."""
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, DBAPIError | PoolTimeout):
        return Unavailable("metadata store") if db.unavailable(exc) else None
    if isinstance(exc, RPCError):  # after the client's own retries, about ten seconds
        return Unavailable("Temporal") if exc.status in (RPCStatusCode.UNAVAILABLE,
                                                         RPCStatusCode.DEADLINE_EXCEEDED) else None
    if isinstance(exc, RuntimeError) and str(exc).startswith(TEMPORAL_CONNECT_FAILED):  # a lazy client's first call
        return Unavailable("Temporal")
    return None


def exception_handlers(body: Body) -> dict:
    """The handlers of one dialect, for a mount's ``ExceptionMiddleware`` or the application."""

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        if isinstance(exc, Unavailable):
            log.warning("%s %s: %s unavailable", request.method, request.url.path, exc.dependency)
        return JSONResponse(body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    async def http_exception(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "error"
        code = _HTTP_CODES.get(exc.status_code, "ERROR")
        return JSONResponse(body(code, message), status_code=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(body("INTERNAL_ERROR", "Internal error"), status_code=500)

    async def dependency_error(request: Request, exc: Exception) -> Response:
        """The metadata store or Temporal is unreachable: 503. Any other error of theirs is unexpected (500)."""
        down = unavailable(exc)
        if down is None:
            return await unexpected(request, exc)
        log.warning("%s %s: %s unavailable: %s", request.method, request.url.path, down.dependency,
                    type(exc).__name__)
        return JSONResponse(body(down.code, down.message), status_code=down.status)

    return {DomainError: domain_error, HTTPException: http_exception,
            DBAPIError: dependency_error, PoolTimeout: dependency_error,
            RPCError: dependency_error, RuntimeError: dependency_error, Exception: unexpected}


DATA_API = exception_handlers(data_body)
JOBS_API = exception_handlers(jobs_body)
