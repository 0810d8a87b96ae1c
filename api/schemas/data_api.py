"""OpenAPI of ``/api/v1/data-api``: execute an endpoint, read a job, redeliver its callback."""

from __future__ import annotations

from typing import Any

from api.schemas.common import BEARER, json_body, operation, path_params, responses
from dataapi.statuses import DeliveryStatus, JobStatus

PREFIX = "/api/v1/data-api"

_COLUMNS = {"type": "array", "items": {"type": "object", "properties": {
    "name": {"type": "string"}, "type": {"type": "string"}}, "required": ["name", "type"]}}
RESULT: dict[str, Any] = {"type": "object", "required": ["columns", "rows", "row_count", "truncated"], "properties": {
    "columns": _COLUMNS, "rows": {"type": "array", "items": {"type": "object"}},
    "row_count": {"type": "integer"}, "truncated": {"type": "boolean"}}}
SYNC_RESULT = {**RESULT, "required": [*RESULT["required"], "max_rows", "executed_at"], "properties": {
    **RESULT["properties"], "max_rows": {"type": "integer"}, "executed_at": {"type": "string"}}}
ACCEPTED = {"type": "object", "required": ["job_id", "status", "polling_url"], "properties": {
    "job_id": {"type": "string"}, "status": {"type": "string"}, "polling_url": {"type": "string"}}}
CALLBACK_STATE = {"type": "object", "properties": {
    "status": {"type": "string", "enum": [*DeliveryStatus]},
    "webhook_id": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
    "last_http_status": {"type": ["integer", "null"]}, "next_attempt_at": {"type": ["string", "null"]}}}
JOB = {"type": "object", "required": ["job_id", "status", "result", "error", "created_at", "completed_at"],
       "properties": {"job_id": {"type": "string"},
                      "status": {"type": "string", "enum": [*JobStatus]},
                      "result": {"oneOf": [RESULT, {"type": "null"}]},
                      "error": {"type": ["string", "null"]}, "created_at": {"type": "string"},
                      "completed_at": {"type": ["string", "null"]}, "callback": CALLBACK_STATE}}
REDELIVERED = {"type": "object", "required": ["webhook_id", "status"],
               "properties": {"webhook_id": {"type": "string"}, "status": {"type": "string"}}}
EXECUTE_BODY = {"type": "object", "properties": {
    "parameter_values": {"type": "object"}, "callback_url": {"type": "string", "format": "uri"}}}

_ENDPOINT = path_params("namespace", "slug")
_JOB = path_params("namespace", "slug", "job_id")
_execute_answers = responses(SYNC_RESULT, 400, 401, 403, 404, 408, 413, 415, 422, 500)
_execute_answers["202"] = {"description": "Accepted (async endpoint)",
                           "content": {"application/json": {"schema": ACCEPTED}}}

OPENAPI = {
    PREFIX + "/{namespace}/{slug}/execute": {"post": operation(
        "Execute a visualization endpoint (sync: 200 with rows; async: 202 with a job)", "data-api",
        _execute_answers, security=BEARER, parameters=_ENDPOINT, body=json_body(EXECUTE_BODY, required=False))},
    PREFIX + "/{namespace}/{slug}/jobs/{job_id}": {"get": operation(
        "Status and result of an execution job", "data-api", responses(JOB, 401, 403, 404, 500),
        security=BEARER, parameters=_JOB)},
    PREFIX + "/{namespace}/{slug}/jobs/{job_id}/callback/redeliver": {"post": operation(
        "Deliver a finished job's result to its callback URL again (a new webhook-id)", "data-api",
        responses(REDELIVERED, 401, 403, 404, 409, ok_status=202), security=BEARER, parameters=_JOB)},
}
