"""Bearer-token authentication and action checks for the JWT-protected routes."""

from __future__ import annotations

import functools

from starlette.requests import Request

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


def requires(action: str):
    """Authenticates the request and checks that the token grants ``action`` (else 403 FORBIDDEN)."""

    def decorate(handler):
        @functools.wraps(handler)
        async def wrapper(request: Request):
            claims = authenticate(request)
            if action not in claims.actions:
                raise Forbidden(f"Missing required permission {action}")
            request.state.claims = claims
            return await handler(request)

        wrapper.required_action = action
        return wrapper

    return decorate
