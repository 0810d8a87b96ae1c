"""OpenAPI of the Auth API (``/api/v1/auth``)."""

from __future__ import annotations

from api.schemas.common import BEARER, json_body, operation, responses

_TOKEN_PAIR = {
    "type": "object",
    "required": ["access_token", "refresh_token", "access_token_expires_in", "refresh_token_expires_in", "user"],
    "properties": {
        "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
        "access_token_expires_in": {"type": "integer"}, "refresh_token_expires_in": {"type": "integer"},
        "user": {"type": "object"},
    },
}


def _text(max_length: int) -> dict:
    """A non-empty string of at most ``max_length`` characters, no NUL (``api.requests.string_field``)."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": r"^[^\x00]*$"}


_LOGIN = {
    "type": "object", "required": ["company_slug", "api_key", "api_secret"],
    "properties": {"company_slug": _text(63), "api_key": _text(64), "api_secret": _text(256)},
}
_REFRESH = {"type": "object", "required": ["refresh_token"], "properties": {"refresh_token": _text(4096)}}
_PERMISSIONS = {
    "type": "object", "required": ["actions"],
    "properties": {"user_id": {"type": "integer"}, "company_slug": {"type": "string"},
                   "actions": {"type": "array", "items": {"type": "string"}}},
}
OPENAPI = {
    "/api/v1/auth/api-key": {"post": operation(
        "Exchange an API key and secret for JWT tokens", "auth", responses(_TOKEN_PAIR, 400, 401, 413, 415, 429),
        security=[], body=json_body(_LOGIN))},
    "/api/v1/auth/refresh": {"post": operation(
        "Rotate a refresh token into a new token pair", "auth", responses(_TOKEN_PAIR, 400, 401, 413, 415, 429),
        security=[], body=json_body(_REFRESH))},
    "/api/v1/auth/permissions": {"get": operation(
        "The caller's effective actions", "auth", responses(_PERMISSIONS, 401), security=BEARER)},
}
