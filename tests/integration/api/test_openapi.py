"""The OpenAPI document matches the app's routes, and the docs page works offline."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from starlette.routing import Mount, Route

from api.mounts import ApiMount

ERROR_REFS = {"#/components/schemas/Error", "#/components/schemas/JobsError"}
# Health answers are status documents, not errors: /readyz's 503 says which check failed.
STATUS_DOCUMENTS = {("/readyz", "get", "503")}
_PARAM_RE = re.compile(r"{([^}:]+)(?::[^}]+)?}")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "trace"}


def openapi_path(starlette_path: str) -> str:
    """``/x/{rest:path}`` → ``/x/{rest}``."""
    return _PARAM_RE.sub(r"{\1}", starlette_path)


def app_operations(app) -> set[tuple[str, str]]:
    """The operations of the app's routes, the routes of each API's mount (full paths) included; an app mounted
    under a path (the docs' static files) is not an operation."""
    ops = set()

    def walk(routes):
        for route in routes:
            if isinstance(route, ApiMount):
                walk(route.routes)
                continue
            if isinstance(route, Mount) or not getattr(route, "include_in_schema", True):
                continue
            assert isinstance(route, Route), route
            for method in route.methods or ():
                if method != "HEAD":  # Starlette adds HEAD to every GET route
                    ops.add((openapi_path(route.path), method.lower()))

    walk(app.routes)
    return ops


def document_operations(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


@pytest.fixture
async def doc(client) -> dict:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


async def test_document_is_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["paths"]


async def test_document_lists_exactly_the_app_routes(app, doc):
    in_app, in_doc = app_operations(app), document_operations(doc)
    assert in_app, "no routes found in the app"
    assert in_app - in_doc == set(), "routes missing from the document"
    assert in_doc - in_app == set(), "documented operations the app does not serve"


async def test_every_operation_has_responses_and_declares_its_path_parameters(doc):
    for path, method, op in operations(doc):
        assert op.get("responses"), f"{method} {path} has no responses"
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), f"{method} {path}: status {status!r}"
            assert response.get("description"), f"{method} {path} {status} has no description"
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        in_template = set(_PARAM_RE.findall(path))
        assert declared == in_template, f"{method} {path}: path parameters {declared} != {in_template}"
        assert all(p["required"] is True for p in op.get("parameters", []) if p["in"] == "path")


async def test_json_error_responses_use_the_error_schemas(doc):
    checked = 0
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if int(status) < 400 or (path, method, status) in STATUS_DOCUMENTS:
                continue
            content = response.get("content", {})
            assert "application/json" in content, f"{method} {path} {status} is not JSON"
            assert content["application/json"]["schema"].get("$ref") in ERROR_REFS, f"{method} {path} {status}"
            checked += 1
    assert checked > 20


async def test_every_reference_and_security_scheme_resolves(doc):
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved $ref {ref}"
            node = node[part]
    schemes = doc["components"]["securitySchemes"]
    for path, method, op in operations(doc):
        for requirement in op.get("security", []):
            assert set(requirement) <= set(schemes), f"{method} {path}: unknown scheme in {requirement}"


@pytest.mark.skipif(importlib.util.find_spec("openapi_spec_validator") is None,
                    reason="openapi-spec-validator is not installed")
async def test_document_passes_openapi_spec_validator(doc):
    from openapi_spec_validator import validate

    validate(doc)


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


async def test_docs_page_uses_only_local_assets(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(r.text)
    assert set(parser.urls) >= {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                                "/docs/assets/docs-init.js"}
    assert not re.search(r"(https?:)?//[a-z0-9]", r.text, re.IGNORECASE), "the page links another host"
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url

    init = await client.get("/docs/assets/docs-init.js")
    assert "'/openapi.json'" in init.text and init.headers["content-type"].startswith("application/javascript")
    css = await client.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert (await client.get("/docs/assets/nope.js")).status_code == 404
