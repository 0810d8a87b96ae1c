"""The methods of each documented path, as the OpenAPI document says them: a request whose path is a path of the
document (its template filled, the most specific template winning, as in OpenAPI) with a method the document
does not list there answers 405 with ``Allow``; ``OPTIONS`` answers 204 with the same ``Allow``. ``HEAD`` goes
where ``GET`` does; ``OPTIONS`` a path documents itself (the codec's CORS preflight) reaches its route. Paths
outside the document go to the routes unchanged."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import JSONResponse, data_body, jobs_body
from api.schemas.jobs_api import PREFIX as JOBS_PREFIX

_METHODS = ("get", "put", "post", "delete", "patch", "options", "trace")
_PARAM = re.compile(r"\{[^}/]+\}")


@dataclass(frozen=True)
class _Path:
    regex: re.Pattern[str]
    templated: int  # how many segments are parameters: the fewest wins when several templates match
    methods: frozenset[str]  # upper case, HEAD with GET
    path: str  # the template, as the document (and the route) writes it


def _compile(path: str, item: dict) -> _Path:
    parts = _PARAM.split(path)
    regex = "[^/]+".join(re.escape(p) for p in parts)
    methods = {m.upper() for m in item if m in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return _Path(re.compile(regex + r"\Z", re.DOTALL), len(parts) - 1, frozenset(methods), path)


@dataclass(frozen=True)
class Documented:
    """The most specific documented template a path fills, and the methods documented there."""

    path: str
    methods: frozenset[str]


def documented(paths: list[_Path], path: str) -> Documented | None:
    """The most specific documented path ``path`` fills; None when it fills none."""
    matches = [p for p in paths if p.regex.match(path)]
    if not matches:
        return None
    fewest = min(p.templated for p in matches)
    best = [p for p in matches if p.templated == fewest]
    return Documented(best[0].path, frozenset().union(*(p.methods for p in best)))


def allow_header(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods | {"OPTIONS"}))


class DocumentedMethods:
    """Pure ASGI, inside the request id (the 405 body carries it) and CORS (a preflight never gets here)."""

    def __init__(self, app: ASGIApp, document: dict):
        self.app = app
        self.paths = [_compile(path, item) for path, item in document["paths"].items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        found = documented(self.paths, path)
        method = scope["method"]
        if found is None or method in found.methods:
            await self.app(scope, receive, send)
            return
        scope["route"] = found  # the metrics count this answer under its route template, as the router would
        headers = {"Allow": allow_header(found.methods)}
        response: Response
        if method == "OPTIONS":
            response = Response(status_code=204, headers=headers)
        else:
            body = jobs_body if path == JOBS_PREFIX or path.startswith(JOBS_PREFIX + "/") else data_body
            response = JSONResponse(body("METHOD_NOT_ALLOWED", "Method Not Allowed"), status_code=405,
                                    headers=headers)
        await response(scope, receive, send)
