"""One canonical error shape, pinned: routing errors, unexpected exceptions and hostile request bodies
all answer ``{"code", "message", "request_id"}`` (the Jobs API ``{"error", "request_id"}``), and bad input is
never a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
import yaml
from starlette.routing import Route

from api.mounts import ApiMount
from cli.demo import endpoint_file
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.settings import Settings
from tests.support.errors import error_body

LOGIN = "/api/v1/auth/api-key"
REFRESH = "/api/v1/auth/refresh"
SYNC = "/api/v1/data-api/default/vendas-por-regiao/execute"
ASYNC = "/api/v1/data-api/default/relatorio-mensal/execute"
CALLBACK = "https://my-system.com/webhook/result"
SECRET_DETAIL = "database password hunter2 at /srv/secret/path"

# Strings a caller may send: control characters, invalid UTF-16 (escaped, as JSON allows), bidi controls,
# emoji, combining marks, non-characters, look-alikes. Every one is a well-formed JSON string.
ODD = {
    "nul": "\x00",
    "nul-inside": "ac\x00me",
    "lone-high-surrogate": "\ud800",
    "lone-low-surrogate": "x\udfffy",
    "reversed-surrogates": "\ude00\ud83d",
    "rtl-override": "\u202eemca",
    "rtl-mark": "\u200f",
    "emoji": "\U0001f600",
    "zwj-emoji": "\U0001f469\u200d\U0001f4bb",
    "combining": "e\u0301\u0301\u0301",
    "bom": "\ufeff",
    "noncharacter": "\uffff\U0010ffff",
    "newline": "\n",
    "cyrillic-lookalike": "\u0430cme",
    "empty": "",
    "long": "\U0001f600" * 3000,
}


def dumps(body) -> bytes:
    """JSON with every non-ASCII character escaped: lone surrogates travel as \\ud800, as a client may send."""
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.fixture
def settings(tmp_path, sqlite_url) -> Settings:
    """No Temporal (a request that got as far as starting a workflow fails with a 500, failing the test) and
    no failed-login limit (a 429 would hide the answer under test)."""
    return Settings(var_dir=tmp_path / "var", database_url=sqlite_url, temporal_address="127.0.0.1:9",
                    auth_max_failures=1_000_000)


def assert_error(r: httpx.Response, *statuses: int) -> dict:
    assert 400 <= r.status_code < 500, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}"
    if statuses:
        assert r.status_code in statuses, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"code", "message", "request_id"}, body
    assert body["request_id"] == r.headers["x-request-id"]
    assert isinstance(body["code"], str) and body["code"] and body["code"].upper() == body["code"]
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.fixture
def creds(app, make_identity):
    """A consumer of a company that has the demo's endpoints (no data: no request here gets to run SQL)."""
    c = make_identity()
    s = app.state.ctx.settings
    with session_scope(app.state.ctx.engine) as session:
        company = identity.get_company(session, c.company_slug)
        for d in yaml.safe_load(endpoint_file().read_text())["endpoints"]:
            upsert_endpoint(session, company, parse_definition(d, s.default_max_rows, s.max_rows_cap))
    return c


@pytest.fixture
async def tokens(client, creds) -> dict:
    r = await client.post(LOGIN, json=creds.login_body())
    assert r.status_code == 200, r.text
    return r.json()


# --- routing and unexpected errors -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v1/auth/api-key/extra", "/docs/assets/x.js",
                                  "/api/v1/admin/endpoints/a/b/c"])
async def test_unknown_route_is_404_in_the_shape(client, path):
    for method in ("GET", "POST", "DELETE"):
        body = assert_error(await client.request(method, path), 404, 405)
        assert body["code"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED")
    assert assert_error(await client.get(path), 404)["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path, expected", [
    ("/api/v1/admin/endpoints/ns/a%0Ab", {"code": "UNAUTHORIZED", "message": "Missing bearer token"}),
    ("/api/v1/data-api/ns/a%0Ab/jobs/x", {"code": "UNAUTHORIZED", "message": "Missing bearer token"}),
])
async def test_a_newline_in_a_path_parameter_reaches_the_route(client, path, expected):
    """Each API's mount takes every path under its prefix, a %0A in a parameter included: the route answers
    (here: no token), not a 404 of the router."""
    r = await client.get(path)
    assert (r.status_code, error_body(r)) == (401, expected)


@pytest.mark.parametrize("method, path", [
    ("GET", LOGIN), ("PUT", REFRESH), ("DELETE", "/api/v1/auth/permissions"), ("POST", "/healthz"),
    ("PATCH", "/api/v1/admin/endpoints"), ("POST", "/api/v1/admin/keys/s42_x"), ("PUT", "/openapi.json"),
])
async def test_wrong_method_is_405_in_the_shape(client, method, path):
    r = await client.request(method, path)
    body = assert_error(r, 405)
    assert body["code"] == "METHOD_NOT_ALLOWED"
    assert r.headers.get("allow"), "405 without an Allow header"


def _boom(_request):
    raise RuntimeError(SECRET_DETAIL)


def _routes_of(app, path: str) -> list:
    """The route list that serves ``path``: its API's mount, else the application's own."""
    for route in app.router.routes:
        if isinstance(route, ApiMount) and path.startswith(route.prefix):
            return route.routes
    return app.router.routes


@pytest.mark.parametrize("path, expected", [
    ("/boom", {"code": "INTERNAL_ERROR", "message": "Internal error"}),
    ("/api/v1/data-api/boom", {"code": "INTERNAL_ERROR", "message": "Internal error"}),
    ("/api/v1/admin/boom", {"code": "INTERNAL_ERROR", "message": "Internal error"}),
    ("/api/v1/jobs/boom", {"error": "Internal error"}),  # the Jobs API dialect (its mount takes /api/v1/job*)
])
async def test_unexpected_exception_is_a_bare_500(app, client, path, expected, caplog):
    _routes_of(app, path).insert(0, Route(path, _boom, methods=["GET", "POST"]))
    for method in ("GET", "POST"):
        r = await client.request(method, path)
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("application/json")
        assert error_body(r) == expected  # the 500 of the outermost handler carries the id too
        for leak in ("hunter2", "Traceback", "RuntimeError", "/srv/", "_boom", ".py"):
            assert leak not in r.text
    assert "hunter2" in caplog.text, "the operator's log should have the exception"


# --- hostile bodies ----------------------------------------------------------------------------------

MALFORMED = {
    "not-json": (b"company_slug=acme", "application/json"),
    "truncated": (b'{"company_slug": "acme"', "application/json"),
    "trailing-garbage": (b'{"a": 1} x', "application/json"),
    "nan": (b'{"a": NaN}', "application/json"),
    "single-quotes": (b"{'a': 1}", "application/json"),
    "bom": (b'\xef\xbb\xbf{"a": 1}', "application/json"),
    "latin-1": ('{"a": "\xe9"}'.encode("latin-1"), "application/json; charset=latin-1"),
    "raw-surrogate-bytes": (b'{"a": "\xed\xa0\x80"}', "application/json"),
    "invalid-utf8": (b'{"a": "\xff\xfe"}', "application/json"),
    "raw-nul": (b'{"a": "\x00"}', "application/json"),
    "array": (b"[]", "application/json"),
    "string": (b'"hello"', "application/json"),
    "number": (b"42", "application/json"),
    "null": (b"null", "application/json"),
    "empty": (b"", "application/json"),
    "whitespace": (b" \n\t ", "application/json"),
    "deep-array": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    "deep-object": (b'{"a":' * 40 + b"1" + b"}" * 40, "application/json"),
    "deep-parameter-values": (b'{"parameter_values": {"a":' + b"[" * 60 + b"]" * 60 + b"}}",
                              "application/json"),
    "text-plain": (b'{"a": 1}', "text/plain"),
    "form": (b'{"a": 1}', "application/x-www-form-urlencoded"),
    "multipart": (b'{"a": 1}', "multipart/form-data; boundary=x"),
    "xml": (b"<a/>", "application/xml"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
@pytest.mark.parametrize("path", [LOGIN, REFRESH, SYNC, ASYNC])
async def test_malformed_bodies_are_4xx(client, tokens, path, name):
    content, ctype = MALFORMED[name]
    r = await client.post(path, content=content, headers={
        "content-type": ctype, "authorization": f"Bearer {tokens['access_token']}"})
    if name in ("empty", "whitespace") and path in (SYNC, ASYNC):
        # The execute body is optional; without it the required parameter is missing.
        assert_error(r, 422)
    else:
        assert_error(r, 400, 415)


@pytest.mark.parametrize("path", [LOGIN, REFRESH, SYNC])
async def test_body_over_the_limit_is_413(app, client, tokens, path):
    limit = app.state.ctx.settings.max_body_bytes
    body = b'{"parameter_values": {"data_inicio": "' + b"x" * limit + b'"}}'
    auth = {"authorization": f"Bearer {tokens['access_token']}", "content-type": "application/json"}
    assert assert_error(await client.post(path, content=body, headers=auth), 413)["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    assert_error(await client.post(path, content=chunks(), headers=auth), 413)
    r = await client.post(path, content=b"{}", headers={**auth, "content-length": "12x"})
    assert_error(r, 400)


def _variants(base: str) -> list[str]:
    """Each odd string alone, before the valid value and after it."""
    return [v for odd in ODD.values() for v in dict.fromkeys((odd, odd + base, base + odd)) if v != base]


@pytest.mark.parametrize("field", ["company_slug", "api_key", "api_secret"])
async def test_odd_strings_in_login_are_4xx(client, creds, field):
    good = creds.login_body()
    for value in _variants(good[field]):
        body = dumps({**good, field: value})
        r = await client.post(LOGIN, content=body, headers={"content-type": "application/json"})
        assert_error(r, 400, 401)
    for odd in ODD.values():  # the field's name
        body = {odd if k == field else k: v for k, v in good.items()}
        r = await client.post(LOGIN, content=dumps(body), headers={"content-type": "application/json"})
        assert_error(r, 400)
    r = await client.post(LOGIN, json=good)
    assert r.status_code == 200, "the unchanged credentials should still log in"


async def test_odd_strings_in_refresh_are_4xx(client, tokens):
    token = tokens["refresh_token"]
    for value in _variants(token):
        r = await client.post(REFRESH, content=dumps({"refresh_token": value}),
                              headers={"content-type": "application/json"})
        assert_error(r, 400, 401)
    for odd in ODD.values():
        r = await client.post(REFRESH, content=dumps({odd: token}), headers={"content-type": "application/json"})
        assert_error(r, 400)
    # none of the above consumed the token
    r = await client.post(REFRESH, json={"refresh_token": token})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path, good, field", [
    (SYNC, {"data_inicio": "2026-01-01", "regiao": "Sul"}, "data_inicio"),
    (SYNC, {"data_inicio": "2026-01-01", "regiao": "Sul"}, "regiao"),
    (ASYNC, {"mes": "2026-03"}, "mes"),
])
async def test_odd_strings_in_parameter_values_are_4xx(client, tokens, path, good, field):
    auth = {"authorization": f"Bearer {tokens['access_token']}", "content-type": "application/json"}
    for value in _variants(good[field]):
        r = await client.post(path, content=dumps({"parameter_values": {**good, field: value}}), headers=auth)
        body = assert_error(r, 400, 422)
        if r.status_code == 422:
            assert field in body["message"]
    for odd in ODD.values():  # as a parameter name, and as a top-level field
        r = await client.post(path, content=dumps({"parameter_values": {**good, odd: "x"}}), headers=auth)
        assert_error(r, 400, 422)
        r = await client.post(path, content=dumps({"parameter_values": good, odd: "x"}), headers=auth)
        assert_error(r, 400)


async def test_odd_strings_in_callback_url_are_4xx(client, tokens):
    auth = {"authorization": f"Bearer {tokens['access_token']}", "content-type": "application/json"}
    host = "my-system.com"
    values: list[str] = []
    for name, odd in ODD.items():
        if not odd:
            continue
        values += [odd, odd + CALLBACK]
        # Letters with marks and Cyrillic make valid internationalised host names (sent as xn--...).
        if name not in ("combining", "cyrillic-lookalike"):
            values += [CALLBACK.replace(host, odd), CALLBACK.replace(host, host + odd),
                       CALLBACK.replace(host, odd + host)]
        # In the path only what no URL may hold; other Unicode is a valid IRI (sent percent-encoded).
        if not odd.isprintable():
            values.append(CALLBACK + odd)
    for value in dict.fromkeys(values):
        body = {"parameter_values": {"mes": "2026-03"}, "callback_url": value}
        r = await client.post(ASYNC, content=dumps(body), headers=auth)
        assert_error(r, 400, 422)


async def test_odd_strings_in_the_path_are_4xx(client, tokens):
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    for odd in ODD.values():
        if any(0xD800 <= ord(c) <= 0xDFFF for c in odd) or not odd:
            continue  # not encodable in a URL
        odd = quote(odd, safe="")
        for path in (f"/api/v1/data-api/{odd}/vendas-por-regiao/execute", f"/api/v1/data-api/default/{odd}/execute",
                     f"/api/v1/data-api/default/relatorio-mensal/jobs/{odd}"):
            r = await client.request("GET" if "/jobs/" in path else "POST", path, json={}, headers=auth)
            assert_error(r, 400, 404)
