"""The OpenAPI 3.1 document, assembled from the fragments of api/schemas/, and an offline docs page (Swagger UI
assets from the openapi-ui-bundles package)."""

from __future__ import annotations

from openapi_ui_bundles import swagger_ui
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.errors import JSONResponse
from api.schemas.common import COMPONENTS


def build_document(fragments: list[dict]) -> dict:
    """The document of the given ``{path: {method: operation}}`` fragments (api/schemas/)."""
    paths: dict = {}
    for fragment in fragments:
        for path, ops in fragment.items():
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
