"""Rate limits and fairness on the execute routes of both APIs (``dataapi/limits.py`` decides; this module
asks it and writes its answer into HTTP).

- ``limited``: a Data API handler behind ``@requires`` counts against its caller's key and company before it
  runs.
- ``admit``: a handler that authenticates its caller itself (the Jobs API) counts once it knows them; its
  answer gets the headers when the handler is wrapped in ``with_quota_headers``.
- ``sync_slot``: a sync execution's turn among its company's executions in flight.

Every answer of a counted request, an error too, carries ``RateLimit-Limit``, ``RateLimit-Remaining``,
``RateLimit-Reset`` and ``RateLimit-Policy`` (the IETF draft's headers) when a limit applies; a refusal is
429 ``RATE_LIMITED`` with ``Retry-After``."""

from __future__ import annotations

import contextlib
import functools

from starlette.requests import Request
from starlette.responses import Response

from api.auth import Handler
from api.context import context
from dataapi.errors import DomainError
from dataapi.identity.tokens import Claims
from dataapi.limits import Quota


def admit(request: Request, company_id: int, api_key_id: int | None, user_id: int) -> None:
    """Counts this request of the caller (its key, or its user when it has none) or raises ``RateLimited``."""
    scope = f"key:{api_key_id}" if api_key_id is not None else f"user:{user_id}"
    request.state.quota = context(request).limits.admit(company_id, scope)


def sync_slot(request: Request, company_id: int) -> contextlib.AbstractAsyncContextManager[None]:
    return context(request).limits.sync_slot(company_id)


def with_quota_headers(handler: Handler) -> Handler:
    """The answer of a counted request, or its error, carries the caller's quota."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            response = await handler(request)
        except DomainError as e:
            quota = _quota(request)
            if quota is not None:
                e.headers = {**quota.headers(), **(e.headers or {})}
            raise
        quota = _quota(request)
        if quota is not None:
            response.headers.update(quota.headers())
        return response

    return wrapper


def limited(handler: Handler) -> Handler:
    """A Data API handler (under ``@requires``) counted against its token's key and company first."""

    @with_quota_headers
    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        claims: Claims = request.state.claims
        admit(request, claims.company_id, claims.api_key_id, claims.user_id)
        return await handler(request)

    return wrapper


def _quota(request: Request) -> Quota | None:
    return getattr(request.state, "quota", None)
