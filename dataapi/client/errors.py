"""Typed errors mirroring the API's status codes and error codes.

Both dialects of the server map here: the Data API's ``{"code", "message"}`` (``request_id`` when the server
sends one) and the Jobs API's ``{"error": message}``, whose code is derived from the status."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


class DataAPIError(Exception):
    """An error answer of the API (or a job that ended in failure).

    ``status`` is the HTTP status (None when no single response carries the failure, e.g. a job that failed
    while it was being waited for), ``code`` the API's error code (``EXECUTION_ERROR``, ``ENDPOINT_NOT_FOUND``,
    ...), ``message`` its message, ``request_id`` the server's id of the request when it sent one, ``body``
    the decoded answer (a dict, or the text when it was not JSON), ``rate_limit`` the answer's ``RateLimit-*``
    headers when it carried them (an execute's)."""

    def __init__(self, status: int | None, code: str, message: str, request_id: str | None = None,
                 body: Any = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.request_id, self.body, self.retry_after = request_id, body, retry_after
        self.rate_limit: RateLimit | None = None

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{self.code}: {self.message}{rid}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r}, "
                f"request_id={self.request_id!r})")


@dataclass(frozen=True)
class RateLimit:
    """The IETF draft's ``RateLimit-*`` headers of an execute: the limit closest to exhaustion (``limit``
    requests, ``remaining`` of them, the window ending in ``reset`` seconds) and every ``policy`` that applies."""

    limit: int
    remaining: int
    reset: float
    policy: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        try:
            return cls(int(headers["ratelimit-limit"]), int(headers["ratelimit-remaining"]),
                       float(headers.get("ratelimit-reset") or 0), headers.get("ratelimit-policy"))
        except (KeyError, ValueError):
            return None


class ValidationError(DataAPIError):
    """400 or 422: the request is malformed, a parameter is invalid or a share context refuses its value."""


class AuthenticationError(DataAPIError):
    """401: the key, the secret or the token is not accepted (revoked key, disabled user, wrong company)."""


class PermissionDeniedError(DataAPIError):
    """403: the caller lacks the action (``data_api:execute``, ``jobs:read``, ...)."""


class NotFoundError(DataAPIError):
    """404: no such endpoint, job or repository for this company (another company's is missing too)."""


class ExecutionTimeoutError(DataAPIError):
    """408 ``EXECUTION_TIMEOUT``: a sync query ran past the server's limit (use the endpoint in async mode)."""


class NotAcceptableError(DataAPIError):
    """406 ``NOT_ACCEPTABLE``: the result cannot be given in the format asked for (the message lists those it can)."""


class ConflictError(DataAPIError):
    """409: the request clashes with the object's state (``IDEMPOTENCY_KEY_IN_USE``: retry)."""


class ResultExpiredError(DataAPIError):
    """410 ``RESULT_EXPIRED``: the job's result was kept for the server's retention and is gone."""


class IdempotencyKeyReusedError(ValidationError):
    """422 ``IDEMPOTENCY_KEY_REUSED``: the key was used within the server's window for another request."""


class RateLimitedError(DataAPIError):
    """429: too many requests (or failed logins); ``retry_after`` holds the seconds the server asks for,
    ``rate_limit`` the ``RateLimit-*`` headers of the refusal (None when it sent none)."""


class ServerError(DataAPIError):
    """5xx: the server could not answer (``INTERNAL_ERROR``, ``SERVICE_UNAVAILABLE``, ...)."""


class ExecutionError(ServerError):
    """500 ``EXECUTION_ERROR``: the endpoint's query failed when it ran."""


class JobFailedError(DataAPIError):
    """A job ended as ``failed``: an async Data API job (``message`` is the job's ``error``) or a Jobs API
    run (``Job failed``). ``job`` holds the last state read, when there is one."""

    def __init__(self, status: int | None, code: str, message: str, request_id: str | None = None,
                 body: Any = None, job: Any = None):
        super().__init__(status, code, message, request_id, body)
        self.job = job


class JobNotFinishedError(DataAPIError):
    """202 (the Jobs API) or 409 ``JOB_NOT_FINISHED`` (a Data API job's result): asked for while the job runs."""


class JobTimeoutError(DataAPIError):
    """Waiting for a job took longer than the caller's ``timeout``; the job goes on on the server."""

    def __init__(self, message: str, job: Any = None):
        super().__init__(None, "WAIT_TIMEOUT", message)
        self.job = job


# The Jobs API answers ``{"error": message}`` only: its code is derived from the status.
_JOBS_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE",
               406: "NOT_ACCEPTABLE", 409: "CONFLICT", 410: "RESULT_EXPIRED", 415: "UNSUPPORTED_MEDIA_TYPE",
               422: "UNPROCESSABLE_ENTITY", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR",
               503: "SERVICE_UNAVAILABLE"}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110); None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _class_for(status: int, code: str) -> type[DataAPIError]:
    if code == "EXECUTION_TIMEOUT" or status == 408:
        return ExecutionTimeoutError
    if code == "EXECUTION_ERROR":
        return ExecutionError
    if code == "JOB_FAILED":
        return JobFailedError
    if code == "JOB_NOT_FINISHED":
        return JobNotFinishedError
    if code == "IDEMPOTENCY_KEY_REUSED":
        return IdempotencyKeyReusedError
    if status in (400, 422):
        return ValidationError
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 406:
        return NotAcceptableError
    if status == 409:
        return ConflictError
    if status == 410:
        return ResultExpiredError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    return DataAPIError


def error_from_response(response: httpx.Response) -> DataAPIError:
    """The typed error of an answer (its body must have been read)."""
    status = response.status_code
    try:
        body: Any = json.loads(response.content) if response.content else None
    except ValueError:
        body = response.text[:2000]
    request_id = response.headers.get("x-request-id")
    if isinstance(body, dict) and "code" in body:  # the Data API's dialect
        code = str(body.get("code") or "ERROR")
        message = str(body.get("message") or "")
        request_id = body.get("request_id") or request_id
    elif isinstance(body, dict) and "error" in body:  # the Jobs API's dialect
        message = str(body["error"])
        code = _JOBS_CODES.get(status, "ERROR")
        if status == 500 and message == "Job failed":
            code = "JOB_FAILED"
        elif status == 422 and "Idempotency-Key" in message:
            code = "IDEMPOTENCY_KEY_REUSED"
    else:  # no error body of either dialect: a 202's ``{"message"}``, a proxy's page, nothing
        code = "JOB_NOT_FINISHED" if status == 202 else _JOBS_CODES.get(status, "ERROR")
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
        else:
            message = body if isinstance(body, str) and body else response.reason_phrase or f"HTTP {status}"
    if status == 202:
        return JobNotFinishedError(status, code, message, request_id, body)
    cls = _class_for(status, code)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if cls is JobFailedError:
        return JobFailedError(status, code, message, request_id, body)
    error = cls(status, code, message, request_id, body, retry_after=retry_after)
    error.rate_limit = RateLimit.from_headers(response.headers)
    return error
