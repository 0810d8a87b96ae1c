"""Request parsing shared by the handlers: bounded JSON bodies and client addresses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from api.context import context
from api.errors import ApiError

MAX_JSON_DEPTH = 32


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "INVALID_REQUEST", "Invalid Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"Request body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"Request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. An empty body is ``{}`` when ``optional``."""
    body = await read_body(request, context(request).settings.max_body_bytes)
    if not body.strip():
        if optional:
            return {}
        raise ApiError(400, "INVALID_REQUEST", "Request body must be a JSON object")
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "INVALID_JSON", "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "INVALID_REQUEST", "Request body must be a JSON object")
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "INVALID_REQUEST", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def string_field(data: dict, name: str, max_len: int = 1024) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, "INVALID_REQUEST", f"'{name}' is required and must be a non-empty string")
    if len(value) > max_len or "\x00" in value:
        raise ApiError(400, "INVALID_REQUEST", f"'{name}' is not valid")
    return value


def client_address(request: Request) -> str:
    if context(request).settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:  # the proxy appends the address it saw; entries before it are the client's to invent
            return forwarded.split(",")[-1].strip()
    return request.client.host if request.client else "unknown"
