"""OpenAPI of the operator's routes: liveness and readiness, Prometheus metrics, the Temporal codec endpoint."""

from __future__ import annotations

from api.schemas.common import ERROR, json_body, json_content, operation, responses
from dataapi.temporal import CODEC_PATH

_STATUS = {"type": "object", "properties": {"status": {"type": "string"}, "checks": {"type": "object"}}}
HEALTH = {
    "/healthz": {"get": operation("Liveness", "operations",
                                  {"200": {"description": "Alive", "content": json_content(_STATUS)}})},
    "/readyz": {"get": operation("Readiness: metadata store and Temporal reachable", "operations",
                                 {s: {"description": d, "content": json_content(_STATUS)}
                                  for s, d in (("200", "Ready"), ("503", "Not ready"))})},
}

METRICS = {"/metrics": {"get": operation(
    "Prometheus metrics", "operations", {
        "200": {"description": "Metrics in the Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}},
        "401": {"description": "Missing or wrong metrics token", "content": json_content(ERROR)},
        "403": {"description": "No metrics token is configured and metrics are not public",
                "content": json_content(ERROR)}},
    security=[{"bearer": []}, {}],
    description="Needs `Authorization: Bearer <metrics token>` (DATAAPI_METRICS_TOKEN, or var/metrics-token of "
                "the embedded stack); refused when no token is configured, unless DATAAPI_METRICS_PUBLIC=true. "
                "The metrics token is an operator's, not a user's access token.")}}

_PAYLOADS = {"type": "object", "required": ["payloads"], "properties": {"payloads": {"type": "array", "items": {
    "type": "object", "properties": {"metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                     "data": {"type": "string", "contentEncoding": "base64"}}}}}}
_OFF = {"description": "The codec endpoint is off (no operator token)", "content": json_content(ERROR)}
_PREFLIGHT = operation("CORS preflight of the Temporal UI", "operations", {
    "204": {"description": "The origin may call this endpoint"},
    "403": {"description": "Origin not allowed", "content": json_content(ERROR)},
    "404": _OFF})


def _convert(summary: str) -> dict:
    return operation(summary, "operations", responses(_PAYLOADS, 400, 401, 403, 404, 413, 422),
                     parameters=[{"name": "X-Namespace", "in": "header", "required": False,
                                  "schema": {"type": "string"}}],
                     body=json_body(_PAYLOADS))


_HTML = {"text/html": {"schema": {"type": "string"}}}
_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "properties": {"token": {"type": "string"}}}}}}
CODEC = {
    f"{CODEC_PATH}/decode": {"post": _convert("Decode Temporal payloads (codec server protocol; operator only)"),
                             "options": _PREFLIGHT},
    f"{CODEC_PATH}/encode": {"post": _convert("Encode Temporal payloads (codec server protocol; operator only)"),
                             "options": _PREFLIGHT},
    f"{CODEC_PATH}/login": {
        "get": operation("Operator sign-in form of the codec endpoint", "operations", {
            "200": {"description": "The form", "content": _HTML},
            "404": {"description": "The codec endpoint is off", "content": json_content(ERROR)}}),
        "post": operation("Sign in with the operator token (sets the session cookie)", "operations", {
            "200": {"description": "Signed in", "content": _HTML},
            "401": {"description": "Wrong token", "content": json_content(ERROR)},
            "404": {"description": "The codec endpoint is off", "content": json_content(ERROR)}}, body=_FORM),
    },
}
