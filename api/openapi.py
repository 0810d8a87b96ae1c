"""The OpenAPI 3.1 document, assembled from the fragments of api/schemas/; a company's own document
(``api.schemas.company``, served at ``/api/v1/data-api/openapi.json``); and an offline docs page (Swagger UI assets
from the openapi-ui-bundles package) that shows either."""

from __future__ import annotations

from typing import Any

from openapi_ui_bundles import swagger_ui
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.auth import requires
from api.context import AppContext
from api.errors import JSONResponse
from api.schemas.common import COMPONENTS
from api.schemas.company import company_document
from dataapi.data_api import catalog
from dataapi.db import session_scope


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


@requires("data_api:execute")
async def company_openapi(request: Request) -> JSONResponse:
    """The caller's company's document: one operation per endpoint the caller may execute."""
    ctx: AppContext = request.app.state.ctx
    claims = request.state.claims

    def read() -> list[dict[str, Any]]:
        with session_scope(ctx.engine) as session:
            entries = catalog.list_catalog(session, claims)
            return [catalog.catalog_entry(session, claims, e["namespace"], e["slug"]) or e for e in entries]

    entries = await run_in_threadpool(read)
    return JSONResponse(company_document(f"Data API of {claims.company_slug}", entries))


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Data API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script>
</body></html>"""

# `/docs` shows the API's document; `/docs?url=/api/v1/data-api/openapi.json#token=<access token>` shows a
# company's, fetched with the token (the fragment never reaches a server or its logs). Only a path of this origin is
# loaded, and the token is sent only to this origin.
DOCS_INIT = """(function () {
  var asked = new URLSearchParams(location.search).get('url') || '';
  var url = /^\\/(?!\\/)[^\\\\]*$/.test(asked) ? asked : '/openapi.json';
  var token = new URLSearchParams(location.hash.slice(1)).get('token') || sessionStorage.getItem('dataapi-token');
  if (token) {
    sessionStorage.setItem('dataapi-token', token);
    history.replaceState(null, '', location.pathname + location.search);
  }
  window.ui = SwaggerUIBundle({
    url: url, dom_id: '#ui', deepLinking: true,
    requestInterceptor: function (req) {
      if (token && new URL(req.url, location.href).origin === location.origin && !req.headers.Authorization) {
        req.headers.Authorization = 'Bearer ' + token;
      }
      return req;
    },
    onComplete: function () { if (token) { window.ui.preauthorizeApiKey('bearer', token); } }
  });
})();
"""


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
