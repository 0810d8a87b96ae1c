"""Bearer-token authentication and action checks for the JWT-protected routes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from api.context import context
from api.errors import unauthorized
from dataapi.errors import Forbidden
from dataapi.identity.tokens import Claims, TokenError


def authenticate(request: Request) -> Claims:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Missing bearer token")
    try:
        return context(request).tokens.verify(token.strip(), "access")
    except TokenError as e:
        raise unauthorized(f"Invalid token: {e}") from None


Handler = Callable[[Request], Awaitable[Response]]


def requires(action: str) -> Callable[[Handler], Handler]:
    """Authenticates the request and checks that the token grants ``action`` (else 403 FORBIDDEN)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            claims = authenticate(request)
            if action not in claims.actions:
                raise Forbidden(f"Missing required permission {action}")
            request.state.claims = claims
            return await handler(request)

        return wrapper

    return decorate
