"""``/api/v1/auth``: exchange an API key for tokens, rotate refresh tokens, list effective actions."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.routing import Route

from api.auth import authenticate
from api.context import context
from api.errors import JSONResponse, unauthorized
from api.requests import client_address, read_json_object, string_field
from api.schemas.auth import OPENAPI
from dataapi.errors import RateLimited, Unauthorized
from dataapi.identity import service as identity
from dataapi.identity.tokens import TokenError

__all__ = ["OPENAPI", "routes"]
log = logging.getLogger("dataapi.auth")


async def api_key_login(request: Request) -> JSONResponse:
    """The secret is checked first: a correct one always logs in, whoever failed before it from wherever.
    A wrong one counts against its (key id, client address) pair and its address; over budget it is a 429."""
    ctx = context(request)
    data = await read_json_object(request)
    company_slug = string_field(data, "company_slug", 63)
    key_id = string_field(data, "api_key", 64)
    secret = string_field(data, "api_secret", 256)
    address = client_address(request)
    try:
        pair = await ctx.transaction(identity.login, ctx.hasher, ctx.tokens, company_slug, key_id, secret)
    except identity.AuthFailed:
        refusal = identity.refusal(ctx.limiter, address, key_id, "Invalid credentials",
                                   headers={"WWW-Authenticate": "Bearer"})
        if isinstance(refusal, Unauthorized):
            log.info("api-key login refused for key %s", key_id[:8])
        raise refusal from None
    ctx.limiter.login_succeeded(address, key_id)
    return JSONResponse(pair)


async def refresh(request: Request) -> JSONResponse:
    """A valid refresh token is always taken; invalid ones count against the client address."""
    ctx = context(request)
    data = await read_json_object(request)
    token = string_field(data, "refresh_token", 4096)
    try:
        claims = ctx.tokens.verify(token, "refresh")
    except TokenError as e:
        if (wait := ctx.limiter.refresh_failed(client_address(request))) is not None:
            raise RateLimited(wait) from None
        raise unauthorized(f"Invalid refresh token: {e}") from None
    try:
        return JSONResponse(await ctx.transaction(identity.rotate_refresh, ctx.tokens, claims))
    except identity.RefreshReused:
        log.warning("refresh token reuse detected; family of user %s revoked", claims.user_id)
        raise unauthorized("Refresh token already used; the session has been revoked") from None
    except identity.AuthFailed:
        raise unauthorized("Invalid refresh token") from None


async def permissions(request: Request) -> JSONResponse:
    claims = authenticate(request)
    return JSONResponse({"user_id": claims.user_id, "company_slug": claims.company_slug,
                         "actions": sorted(claims.actions)})


routes = [
    Route("/api/v1/auth/api-key", api_key_login, methods=["POST"]),
    Route("/api/v1/auth/refresh", refresh, methods=["POST"]),
    Route("/api/v1/auth/permissions", permissions, methods=["GET"]),
]
