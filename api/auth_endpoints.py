"""``/api/v1/auth``: exchange an API key for tokens, rotate refresh tokens, list effective actions."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from api.auth import authenticate
from api.errors import ApiError, JSONResponse, unauthorized
from api.openapi import json_body, responses
from api.requests import client_address, read_json_object, string_field
from dataapi import identity
from dataapi.db import session_scope
from dataapi.tokens import TokenError

log = logging.getLogger("dataapi.auth")


def _rate_limited(retry_after: int) -> ApiError:
    return ApiError(429, "RATE_LIMITED", "Too many failed attempts; retry later",
                    {"Retry-After": str(retry_after)})


async def api_key_login(request: Request) -> JSONResponse:
    """The secret is checked first: a correct one always logs in, whoever failed before it from wherever.
    A wrong one counts against its (key id, client address) pair and its address; over budget it is a 429."""
    ctx = request.app.state.ctx
    data = await read_json_object(request)
    company_slug = string_field(data, "company_slug", 63)
    key_id = string_field(data, "api_key", 64)
    secret = string_field(data, "api_secret", 256)
    address = client_address(request)

    def login() -> dict:
        with session_scope(ctx.engine) as session:
            principal = identity.authenticate_api_key(session, ctx.hasher, company_slug, key_id, secret)
            return identity.issue_pair(session, ctx.tokens, principal)

    try:
        pair = await run_in_threadpool(login)
    except identity.AuthFailed:
        if (wait := ctx.limiter.login_failed(address, key_id)) is not None:
            raise _rate_limited(wait) from None
        log.info("api-key login refused for key %s", key_id[:8])
        raise unauthorized("Invalid credentials") from None
    ctx.limiter.login_succeeded(address, key_id)
    return JSONResponse(pair)


async def refresh(request: Request) -> JSONResponse:
    """A valid refresh token is always taken; invalid ones count against the client address."""
    ctx = request.app.state.ctx
    data = await read_json_object(request)
    token = string_field(data, "refresh_token", 4096)
    try:
        claims = ctx.tokens.verify(token, "refresh")
    except TokenError as e:
        if (wait := ctx.limiter.refresh_failed(client_address(request))) is not None:
            raise _rate_limited(wait) from None
        raise unauthorized(f"Invalid refresh token: {e}") from None

    def rotate() -> dict:
        with session_scope(ctx.engine) as session:
            return identity.rotate_refresh(session, ctx.tokens, claims)

    try:
        return JSONResponse(await run_in_threadpool(rotate))
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

_TOKEN_PAIR = {
    "type": "object",
    "required": ["access_token", "refresh_token", "access_token_expires_in", "refresh_token_expires_in", "user"],
    "properties": {
        "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
        "access_token_expires_in": {"type": "integer"}, "refresh_token_expires_in": {"type": "integer"},
        "user": {"type": "object"},
    },
}
_LOGIN = {
    "type": "object", "required": ["company_slug", "api_key", "api_secret"],
    "properties": {"company_slug": {"type": "string"}, "api_key": {"type": "string"},
                   "api_secret": {"type": "string"}},
}
_REFRESH = {"type": "object", "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}}
_PERMISSIONS = {
    "type": "object", "required": ["actions"],
    "properties": {"user_id": {"type": "integer"}, "company_slug": {"type": "string"},
                   "actions": {"type": "array", "items": {"type": "string"}}},
}
OPENAPI = {
    "/api/v1/auth/api-key": {"post": {
        "summary": "Exchange an API key and secret for JWT tokens", "tags": ["auth"], "security": [],
        "requestBody": json_body(_LOGIN), "responses": responses(_TOKEN_PAIR, 400, 401, 413, 415, 429)}},
    "/api/v1/auth/refresh": {"post": {
        "summary": "Rotate a refresh token into a new token pair", "tags": ["auth"], "security": [],
        "requestBody": json_body(_REFRESH), "responses": responses(_TOKEN_PAIR, 400, 401, 413, 415, 429)}},
    "/api/v1/auth/permissions": {"get": {
        "summary": "The caller's effective actions", "tags": ["auth"], "security": [{"bearer": []}],
        "responses": responses(_PERMISSIONS, 401)}},
}
