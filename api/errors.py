"""One error base carrying its HTTP status, rendered in the dialect of the API it belongs to:
Data API ``{"code", "message"}``, Jobs API ``{"error"}``."""

from __future__ import annotations

import logging

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from temporalio.service import RPCError, RPCStatusCode

from dataapi import db

log = logging.getLogger("dataapi.api")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}


class JobsApiError(ApiError):
    """The Jobs API (vBrain dialect) error: ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(status, "", message, headers)

    def body(self) -> dict:
        return {"error": self.message}


def unauthorized(message: str = "Missing or invalid token") -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, {"WWW-Authenticate": "Bearer"})


async def handle_api_error(_request: Request, exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 400: "BAD_REQUEST"}


async def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else "error"
    if request.url.path.startswith("/api/v1/job"):
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)
    code = _HTTP_CODES.get(exc.status_code, "ERROR")
    return JSONResponse({"code": code, "message": message}, status_code=exc.status_code, headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if request.url.path.startswith("/api/v1/job"):
        return JSONResponse({"error": "Internal error"}, status_code=500)
    return JSONResponse({"code": "INTERNAL_ERROR", "message": "Internal error"}, status_code=500)


def _temporal_unavailable(exc: Exception) -> bool:
    """Temporal's frontend does not answer (after the client's own retries, about ten seconds)."""
    if isinstance(exc, RPCError):
        return exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")  # a lazy client's first call


async def handle_dependency_error(request: Request, exc: Exception) -> Response:
    """The metadata store or Temporal is unreachable (a restart, a failover): 503, which callers may retry.
    Any other error of theirs is unexpected (500)."""
    dependency = "Temporal" if isinstance(exc, RPCError | RuntimeError) else "metadata store"
    if not (db.unavailable(exc) or _temporal_unavailable(exc)):
        return await handle_unexpected(request, exc)
    log.warning("%s %s: %s unavailable: %s", request.method, request.url.path, dependency, type(exc).__name__)
    if request.url.path.startswith("/api/v1/job"):
        return JSONResponse({"error": "Service unavailable, retry later"}, status_code=503)
    return JSONResponse({"code": "SERVICE_UNAVAILABLE", "message": "Service unavailable, retry later"},
                        status_code=503)


EXCEPTION_HANDLERS = {ApiError: handle_api_error, HTTPException: handle_http_exception,
                      DBAPIError: handle_dependency_error, PoolTimeout: handle_dependency_error,
                      RPCError: handle_dependency_error, RuntimeError: handle_dependency_error,
                      Exception: handle_unexpected}
