"""The one error base of the domain: a service raises a ``DomainError`` that knows its HTTP status and its
machine-readable code; each API renders it in its own dialect in one place (the Data API and Admin API as
``{"code", "message"}``, the Jobs API as ``{"error"}``), and the CLI prints its message.

Services never import HTTP types: the status is plain data here so that the mapping to a response stays a
single function per API.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the caller can act on. ``status`` is the HTTP status an API answers with, ``code`` the stable
    code of the Data API dialect, ``headers`` any headers the answer needs (``Retry-After``...)."""

    status: int = 400
    code: str = "INVALID_REQUEST"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers


class NotFound(DomainError):
    """The object does not exist, or belongs to another company or user: the same answer for both."""

    status, code = 404, "NOT_FOUND"


class Forbidden(DomainError):
    status, code = 403, "FORBIDDEN"


class Unauthorized(DomainError):
    status, code = 401, "UNAUTHORIZED"


class Conflict(DomainError):
    status, code = 409, "CONFLICT"


class Invalid(DomainError):
    """A well-formed request whose content the domain refuses (a bad definition, a bad parameter value)."""

    status, code = 422, "INVALID_REQUEST"


class InvalidDefinition(DomainError):
    """An object an admin defines (a user, a repository, an endpoint) is not valid as written."""

    status, code = 400, "INVALID_DEFINITION"


class RateLimited(DomainError):
    """Too many attempts (failed logins, or executions over a rate limit): the caller waits ``retry_after``
    seconds (sent as ``Retry-After``)."""

    status, code = 429, "RATE_LIMITED"

    def __init__(self, retry_after: int, message: str = "Too many failed attempts; retry later"):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Unavailable(DomainError):
    """A dependency (the metadata store, Temporal) does not answer: a 503 the caller may retry."""

    status, code = 503, "SERVICE_UNAVAILABLE"

    def __init__(self, dependency: str, message: str = "Service unavailable, retry later"):
        super().__init__(message)
        self.dependency = dependency
