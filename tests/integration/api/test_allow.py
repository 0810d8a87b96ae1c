"""``Allow`` says what the OpenAPI document says: ``OPTIONS`` on any documented path answers 204 with its methods,
a method the document does not list there answers 405 with the same ``Allow`` in the API's error dialect, and the
most specific path wins (``/api/v1/job/execute`` over ``/api/v1/job/{job_id}``)."""

from __future__ import annotations

import re

import pytest

from tests.integration.api.test_openapi import HTTP_METHODS

OTHER_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def _expected(item: dict) -> set[str]:
    methods = {m.upper() for m in item if m in HTTP_METHODS} | {"OPTIONS"}
    return methods | ({"HEAD"} if "GET" in methods else set())


def _allow(response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


async def test_options_and_undocumented_methods_answer_the_documents_allow(client, app):
    doc = app.state.openapi
    checked = 0
    for path, item in doc["paths"].items():
        url, expected = _concrete(path), _expected(item)
        if "options" not in item:  # a path that documents OPTIONS (the codec's preflight) answers it itself
            r = await client.options(url)
            assert r.status_code == 204, (path, r.status_code, r.text)
            assert _allow(r) == expected, path
        for method in OTHER_METHODS:
            if method.lower() in item:
                continue
            r = await client.request(method, url)
            assert r.status_code == 405, (method, path, r.status_code, r.text)
            assert _allow(r) == expected, (method, path)
            body = r.json()
            if path.startswith("/api/v1/job"):
                assert body["error"] == "Method Not Allowed" and body["request_id"]
            else:
                assert body["code"] == "METHOD_NOT_ALLOWED" and body["request_id"]
            checked += 1
    assert checked > 60


@pytest.mark.parametrize(("method", "url", "allow"), [
    ("GET", "/api/v1/job/execute", {"POST", "OPTIONS"}),  # not the job "execute": the concrete path wins
    ("POST", "/api/v1/data-api/endpoints", {"GET", "HEAD", "OPTIONS"}),  # not the 404 of an unknown route
    ("GET", "/api/v1/data-api/default/vendas/execute", {"POST", "OPTIONS"}),
])
async def test_the_most_specific_documented_path_gives_the_methods(client, method, url, allow):
    r = await client.request(method, url)
    assert r.status_code == 405 and _allow(r) == allow and r.headers["x-request-id"]


async def test_paths_outside_the_document_are_routed_as_before(client):
    r = await client.options("/api/v1/data-api/a/b/c/d/e/f")
    assert r.status_code in (404, 405)
    assert (await client.get("/api/v1/nothing-here")).status_code == 404
