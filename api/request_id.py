"""``X-Request-Id``: every request gets an id, the caller's when it sent a well-formed one, else a generated one
(32 hex digits). The response carries it back (every response: errors, 404/405 and 500 included), error bodies
carry it as ``request_id`` (``api/errors.py``) and every JSON log line made while serving the request carries it
(``dataapi.logs``), so that a caller's report leads to the operator's log lines."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataapi.logs import request_id

HEADER = "X-Request-Id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def accepted(value: str | None) -> str | None:
    """The caller's id if it is one we pass on (1-128 characters of letters, digits and ``._:-``), else None."""
    return value if value is not None and _WELL_FORMED.fullmatch(value) else None


class RequestIdMiddleware:
    """Pure ASGI (no buffering, streams pass through). Wraps the whole application, the handler of unexpected
    errors included, so that their 500 carries the id as well."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = accepted(raw.decode("latin-1") if raw is not None else None) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
