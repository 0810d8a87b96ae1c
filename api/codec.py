"""The codec endpoint: the Temporal UI (or ``temporal --codec-endpoint``) sends the encrypted payloads it shows to
``POST /api/v1/temporal-codec/decode`` (and ``/encode`` for what an operator types in) and gets them back
decoded, for an operator only.

Temporal's codec server protocol: a JSON body ``{"payloads": [...]}`` in proto JSON (metadata values and data in
base64) and an ``X-Namespace`` header; the answer has the same shape. The UI calls it from the browser, so the
configured UI origins get CORS answers (preflight included).

Who may decode: the holder of the operator token (``DATAAPI_CODEC_TOKEN``, or var/codec-token made by
``dataapi dev``), sent as ``Authorization: Bearer <token>`` (scripts, the temporal CLI, a proxy that adds it)
or as the session cookie that ``/login`` sets once the token is typed in there (the UI's browser: it sends the
cookie when its codec setting "include cross-origin credentials" is on; the UI sends a bearer token only from
its own OIDC login, which is not ours). No token configured: every route here answers 404.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from urllib.parse import parse_qs

import orjson
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from api.context import context
from api.errors import ApiError, JSONResponse, data_body
from api.requests import read_body
from api.schemas.operations import CODEC as OPENAPI
from dataapi.codec import EncryptionCodec, PayloadDecryptionError, codec_token, payload_codec
from dataapi.settings import Settings
from dataapi.temporal import CODEC_PATH

__all__ = ["OPENAPI", "allowed_origins", "routes"]

COOKIE = "dataapi_codec_session"
SESSION_SECONDS = 8 * 3600
MAX_BODY_BYTES = 8 << 20  # Temporal refuses payloads over 2 MiB; an event's few fit
_ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def _state(request: Request) -> tuple[str | None, EncryptionCodec | None]:
    """(operator token, codec) of this app, read once."""
    app_state = request.app.state
    cached = getattr(app_state, "temporal_codec", None)
    if cached is None:
        settings = context(request).settings
        token = codec_token(settings)
        cached = (token, payload_codec(settings) if token else None)
        app_state.temporal_codec = cached
    return cached


def allowed_origins(settings: Settings) -> set[str]:
    configured = {o.strip().rstrip("/") for o in settings.codec_cors_origins.split(",") if o.strip()}
    return configured or {f"http://localhost:{settings.temporal_ui_port}",
                          f"http://127.0.0.1:{settings.temporal_ui_port}"}


def _cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin and origin in allowed_origins(context(request).settings):
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    return {"Vary": "Origin"}


def _session_value(token: str, expires: int) -> str:
    mac = hmac.new(token.encode(), f"temporal-codec-session:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def _valid_session(token: str, value: str | None) -> bool:
    if not value:
        return False
    expires, _, _ = value.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(value.encode(), _session_value(token, int(expires)).encode())


def _authorised(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    if given[:7].lower() == "bearer ":
        return hmac.compare_digest(given[7:].strip().encode(), token.encode())
    return _valid_session(token, request.cookies.get(COOKIE))


async def _convert(request: Request, decode: bool) -> Response:
    token, codec = _state(request)
    if token is None or codec is None:
        raise ApiError(404, "NOT_FOUND", "Not found")
    cors = _cors(request)
    try:
        if request.method == "OPTIONS":  # preflight: no credentials are sent with it
            if "Access-Control-Allow-Origin" not in cors:
                raise ApiError(403, "FORBIDDEN", "Origin not allowed")
            extra = {"Access-Control-Allow-Methods": "POST, OPTIONS", "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
                     "Access-Control-Max-Age": "600"}
            if request.headers.get("access-control-request-private-network") == "true":
                extra["Access-Control-Allow-Private-Network"] = "true"
            return Response(status_code=204, headers={**cors, **extra})
        if request.headers.get("origin") and "Access-Control-Allow-Origin" not in cors:
            raise ApiError(403, "FORBIDDEN", "Origin not allowed")
        if not _authorised(request, token):
            raise ApiError(401, "UNAUTHORIZED", "The codec endpoint needs the operator token",
                           {"WWW-Authenticate": "Bearer"})
        body = await read_body(request, MAX_BODY_BYTES)
        try:
            data = orjson.loads(body)
            if not isinstance(data, dict):
                raise TypeError
            payloads = ParseDict(data, Payloads(), ignore_unknown_fields=True)
        except (orjson.JSONDecodeError, ParseError, TypeError, ValueError, AttributeError):
            raise ApiError(400, "INVALID_REQUEST", 'Body must be {"payloads": [...]} in proto JSON') from None
        try:
            converted = await (codec.decode if decode else codec.encode)(payloads.payloads)
        except PayloadDecryptionError as e:
            raise ApiError(422, "PAYLOAD_UNDECODABLE", str(e)) from None
        out = MessageToDict(Payloads(payloads=converted))
        return JSONResponse({"payloads": out.get("payloads", [])}, headers=cors)
    except ApiError as e:
        return JSONResponse(data_body(e.code, e.message), status_code=e.status, headers={**(e.headers or {}), **cors})


async def decode(request: Request) -> Response:
    return await _convert(request, decode=True)


async def encode(request: Request) -> Response:
    return await _convert(request, decode=False)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Temporal codec sign-in</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Temporal UI decoding</h1><p>{message}</p>
<form method="post"><label>Operator token <input type="password" name="token" autocomplete="off" autofocus>
</label> <button type="submit">Sign in</button></form>
<p>Then, in the Temporal UI, open the codec server settings, use the browser setting with the endpoint
<code>{endpoint}</code> and turn on <em>include cross-origin credentials</em>.</p></body></html>"""
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                 "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(request: Request, message: str, status: int = 200) -> HTMLResponse:
    endpoint = str(request.url_for("codec_decode")).removesuffix("/decode")
    return HTMLResponse(_PAGE.format(message=html.escape(message), endpoint=html.escape(endpoint)),
                        status_code=status, headers=_PAGE_HEADERS)


async def login(request: Request) -> Response:
    """A form for the operator token; the right one sets the session cookie the UI's requests carry."""
    token, _ = _state(request)
    if token is None:
        raise ApiError(404, "NOT_FOUND", "Not found")
    if request.method == "GET":
        return _page(request, "Sign in with the operator token to let the Temporal UI decode payloads.")
    form = parse_qs((await read_body(request, 4096)).decode(errors="replace"))
    given = (form.get("token") or [""])[0].strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "UNAUTHORIZED", "Wrong operator token")
    expires = int(time.time()) + SESSION_SECONDS
    response = _page(request, f"Signed in for {SESSION_SECONDS // 3600} hours.")
    response.set_cookie(COOKIE, _session_value(token, expires), max_age=SESSION_SECONDS, path=CODEC_PATH,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


routes = [
    Route(f"{CODEC_PATH}/decode", decode, methods=["POST", "OPTIONS"], name="codec_decode"),
    Route(f"{CODEC_PATH}/encode", encode, methods=["POST", "OPTIONS"]),
    Route(f"{CODEC_PATH}/login", login, methods=["GET", "POST"]),
]
