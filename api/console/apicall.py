"""The console's calls of the Data API: the visitor's request goes through the API's own handler, in process, with
a short-lived access token of the visitor's (never shown to the browser). The console thus runs an endpoint,
reads a job and redelivers a callback exactly as an integration does, and shows the API's JSON as it is."""

from __future__ import annotations

import shlex
from typing import Any

import httpx
import orjson
from starlette.requests import Request

from api.context import context
from api.schemas.data_api import PREFIX
from dataapi.identity.sessions import Visitor


class ApiAnswer:
    def __init__(self, status: int, body: bytes):
        self.status, self.body = status, body

    @property
    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    @property
    def pretty(self) -> str:
        data = self.json
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if data is not None else self.body.decode()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _token(request: Request, visitor: Visitor) -> str:
    token, _ = context(request).tokens.issue(
        "access", user_id=visitor.user_id, company_id=visitor.company_id, company_slug=visitor.company_slug,
        api_key_id=None, actions=list(visitor.actions))
    return token


async def call(request: Request, visitor: Visitor, method: str, path: str, body: Any = None) -> ApiAnswer:
    """``method path`` of the Data API (``path`` below its prefix) as the visitor."""
    transport = httpx.ASGITransport(app=request.app, raise_app_exceptions=False,
                                    client=(request.client.host if request.client else "127.0.0.1", 0))
    timeout = context(request).settings.sync_timeout_seconds + 30
    async with httpx.AsyncClient(transport=transport, base_url="http://console.internal", timeout=timeout) as api:
        r = await api.request(method, PREFIX + path, json=body,
                              headers={"Authorization": f"Bearer {_token(request, visitor)}"})
    return ApiAnswer(r.status_code, r.content)


def curl(base_url: str, namespace: str, slug: str, body: dict) -> str:
    """The ready command an integration runs, with the caller's placeholders."""
    url = f"{base_url}{PREFIX}/{namespace}/{slug}/execute"
    return (f'curl -X POST {shlex.quote(url)} \\\n  -H "Authorization: Bearer $ACCESS_TOKEN" \\\n'
            f"  -H 'Content-Type: application/json' \\\n  -d {shlex.quote(orjson.dumps(body).decode())}")
