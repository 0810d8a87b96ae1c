"""The OpenAPI 3.1 document, assembled from the ``OPENAPI`` fragments each route module declares, and an
offline docs page (Swagger UI assets from the openapi-ui-bundles package)."""

from __future__ import annotations

from openapi_ui_bundles import swagger_ui
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.errors import JSONResponse

ERROR = {"$ref": "#/components/schemas/Error"}
JOBS_ERROR = {"$ref": "#/components/schemas/JobsError"}

COMPONENTS = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                   "description": "`<api_key>.<api_secret>` of an integration user"},
    },
    "schemas": {
        "Error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "JobsError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    },
}


def json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def responses(ok: dict, *errors: int, ok_status: int = 200, error_schema: dict = ERROR) -> dict:
    """A responses object: the success schema and the listed error statuses in the dialect's shape, and 503
    (a dependency down), which any operation may answer."""
    out = {str(ok_status): {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    for status in (*errors, 503):
        out[str(status)] = {"description": _REASONS.get(status, "Error"),
                            "content": {"application/json": {"schema": error_schema}}}
    return out


_REASONS = {400: "Bad request", 401: "Missing or invalid credentials", 403: "Missing permission",
            404: "Not found", 408: "Timed out", 409: "Conflict", 413: "Body too large",
            415: "Unsupported media type", 422: "Invalid parameter", 429: "Too many failed attempts",
            500: "Error", 503: "The metadata store or Temporal is unreachable; retry later"}


def build_document(modules) -> dict:
    paths: dict = {}
    for module in modules:
        for path, ops in module.OPENAPI.items():
            paths.setdefault(path, {}).update(ops)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Data API", "version": "1.0.0",
                 "description": "Visualization endpoints (Data API) and analytics jobs (Jobs API) on Temporal."},
        "paths": paths,
        "components": COMPONENTS,
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Data API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script>
</body></html>"""

DOCS_INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#ui', deepLinking: true});"


async def docs_page(_request: Request) -> HTMLResponse:
    return HTMLResponse(DOCS_HTML)


async def docs_init(_request: Request) -> Response:
    return Response(DOCS_INIT, media_type="application/javascript")


# The document and its viewer are not operations of the API: they stay out of the document itself.
routes = [
    Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
    Route("/docs", docs_page, methods=["GET"], include_in_schema=False),
    Route("/docs/assets/docs-init.js", docs_init, methods=["GET"], include_in_schema=False),
    Mount("/docs/assets", app=StaticFiles(directory=swagger_ui.static_path), name="docs-assets"),
]
