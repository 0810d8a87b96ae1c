"""``GET /``: where to go from the bare base URL (the docs, the document, the console, health), so that a caller
given only a base URL finds the rest."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from api.errors import JSONResponse
from api.schemas import admin, data_api, jobs_api

INDEX = {
    "name": "Data API",
    "docs": "/docs",
    "console": "/console",
    "openapi": "/openapi.json",
    "health": "/healthz",
    "apis": {"auth": "/api/v1/auth", "data": data_api.PREFIX, "jobs": jobs_api.PREFIX, "admin": admin.PREFIX},
}


async def index(_request: Request) -> JSONResponse:
    return JSONResponse(INDEX, headers={"Link": '</docs>; rel="service-doc", </openapi.json>; rel="service-desc"'})


# Not an operation of the API: it stays out of the document, as the document and its viewer do.
routes = [Route("/", index, methods=["GET"], include_in_schema=False)]
