"""One mount per API: its routes and the exception handlers that render its errors in its dialect.

A Starlette ``Mount`` strips its prefix from the paths it routes and does not match the bare prefix
(``/api/v1/job`` lists jobs); an ``ApiMount`` keeps full paths (route templates read the same everywhere: the
OpenAPI document, the metrics' route labels) and takes every path that starts with its prefix, so that a
404 or 405 under it answers in its API's dialect too."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match, Mount, get_route_path
from starlette.types import Scope


class ApiMount(Mount):
    def __init__(self, prefix: str, routes: Sequence[BaseRoute], handlers: dict, name: str | None = None):
        super().__init__("", routes=routes, name=name,
                         middleware=[Middleware(ExceptionMiddleware, handlers=handlers)])
        self.prefix = prefix

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Not Mount's own regex: its ``.*`` stops at a newline, and a path parameter may hold one (%0A), which
        # the routes inside match and answer (or refuse) themselves.
        if scope["type"] == "http" and get_route_path(scope).startswith(self.prefix):
            root_path = scope.get("root_path", "")
            return Match.FULL, {"path_params": dict(scope.get("path_params", {})),
                                "app_root_path": scope.get("app_root_path", root_path),
                                "root_path": root_path, "endpoint": self.app}
        return Match.NONE, {}
