"""Error bodies as tests compare them: every error body carries the request's id (``request_id``, the same as the
``X-Request-Id`` header), checked here and taken out so that the rest compares exactly."""

from __future__ import annotations

import httpx


def error_body(r: httpx.Response) -> dict:
    body = r.json()
    assert body.pop("request_id") == r.headers["x-request-id"], r.text
    return body
