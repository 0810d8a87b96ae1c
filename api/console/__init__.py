"""The web console under ``/console``: server-rendered pages (Jinja2) for human users, over the same domain services
as the APIs. ``mount()`` is what ``api/app.py`` adds to the application."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.console import admin_pages, data, endpoints, jobs, login, users
from api.console.web import HERE, NAV, PREFIX, handlers, page, redirect, visitor_of
from api.mounts import ApiMount
from dataapi.errors import Forbidden


@page(None)
async def home(request: Request) -> Response:
    """The first page the visitor's policies allow."""
    visitor = visitor_of(request)
    for _label, path, action in NAV:
        if visitor.may(action):
            return redirect(path)
    raise Forbidden("Your user holds no policy that opens a page of the console; ask a CompanyAdmin")


async def bare(_request: Request) -> Response:
    return redirect("/")


routes: list[BaseRoute] = [
    Route(PREFIX, bare, methods=["GET"]),
    Route(PREFIX + "/", home, methods=["GET"]),
    Mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static"),
    *login.routes, *endpoints.routes, *jobs.routes, *users.routes, *admin_pages.routes, *data.routes,
]


for _route in routes:  # HTML pages for people, not operations of the API's OpenAPI document
    if isinstance(_route, Route):
        _route.include_in_schema = False


def mount() -> ApiMount:
    return ApiMount(PREFIX, routes, handlers, name="console")
