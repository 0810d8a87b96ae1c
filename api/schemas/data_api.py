"""OpenAPI of ``/api/v1/data-api``: the catalog, execute an endpoint, read a job, redeliver its callback."""

from __future__ import annotations

from typing import Any

from api.schemas import results as results_schema
from api.schemas.common import BEARER, json_body, operation, path_params, responses
from api.schemas.data_api_jobs import EXECUTE_HEADERS, PREFERENCE_APPLIED, job_paths
from api.schemas.limits import with_rate_limits
from dataapi.statuses import DeliveryStatus, JobStatus

PREFIX = "/api/v1/data-api"

_COLUMNS = {"type": "array", "items": {"type": "object", "properties": {
    "name": {"type": "string"}, "type": {"type": "string"}}, "required": ["name", "type"]}}
RESULT: dict[str, Any] = {"type": "object", "required": ["columns", "rows", "row_count", "truncated"], "properties": {
    "columns": _COLUMNS, "rows": {"type": "array", "items": {"type": "object"}},
    "row_count": {"type": "integer"}, "truncated": {"type": "boolean"}}}
SYNC_RESULT = {**RESULT, "required": [*RESULT["required"], "max_rows", "executed_at"], "properties": {
    **RESULT["properties"], "max_rows": {"type": "integer"}, "executed_at": {"type": "string"},
    "cached": {"type": "boolean", "description": "present (true) when the result cache answered"}}}
ACCEPTED = {"type": "object", "required": ["job_id", "status", "polling_url"], "properties": {
    "job_id": {"type": "string"}, "status": {"type": "string"}, "polling_url": {"type": "string"}}}
CALLBACK_STATE = {"type": "object", "properties": {
    "status": {"type": "string", "enum": [*DeliveryStatus]},
    "webhook_id": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
    "last_http_status": {"type": ["integer", "null"]}, "next_attempt_at": {"type": ["string", "null"]}}}
JOB = {"type": "object", "required": ["job_id", "status", "result", "error", "created_at", "completed_at"],
       "properties": {"job_id": {"type": "string"},
                      "status": {"type": "string", "enum": [s for s in JobStatus if s != JobStatus.DELETED]},
                      "result": {"oneOf": [RESULT, {"type": "null"}]},
                      "error": {"type": ["string", "null"]}, "created_at": {"type": "string"},
                      "completed_at": {"type": ["string", "null"]}, "callback": CALLBACK_STATE,
                      "expires_at": {"type": ["string", "null"], "description": "when the result expires (null "
                                     "while the job runs); from then on the job answers 410 RESULT_EXPIRED"}}}
REDELIVERED = {"type": "object", "required": ["webhook_id", "status"],
               "properties": {"webhook_id": {"type": "string"}, "status": {"type": "string"}}}
EXECUTE_BODY = {"type": "object", "additionalProperties": False, "properties": {
    "parameter_values": {"type": ["object", "null"],
                         "description": "The endpoint's parameters: their types and constraints are in the company's "
                                        "document (GET " + PREFIX + "/openapi.json) and the catalog; 422 when they "
                                        "do not fit"},
    "callback_url": {"type": ["string", "null"], "format": "uri", "pattern": r"^https://[^/?#\s]+",
                     "description": "async endpoints: an HTTPS URL of a public host the result is delivered to"}}}

_PARAMETER = {"type": "object", "required": ["name", "type", "required", "default", "description", "fixed"],
              "properties": {
                  "name": {"type": "string"},
                  "type": {"type": "string",
                           "enum": ["string", "integer", "decimal", "boolean", "date", "datetime", "enum"]},
                  "required": {"type": "boolean"}, "default": {}, "description": {"type": "string"},
                  "allowed_values": {"type": "array", "description": "enum values, or the values a share context "
                                     "allows the caller"},
                  "pattern": {"type": "string", "description": "RE2 regular expression the whole value must match"},
                  "max_length": {"type": "integer"},
                  "fixed": {"type": "boolean",
                            "description": "pinned by a share context: the server applies `value`"},
                  "value": {"description": "the pinned value (when fixed)"}}}
CATALOG_ENTRY: dict[str, Any] = {
    "type": "object", "required": ["namespace", "slug", "description", "execution_mode", "max_rows", "parameters"],
    "properties": {"namespace": {"type": "string"}, "slug": {"type": "string"}, "description": {"type": "string"},
                   "execution_mode": {"type": "string", "enum": ["sync", "async"]},
                   "max_rows": {"type": "integer"}, "parameters": {"type": "array", "items": _PARAMETER},
                   "cache_seconds": {"type": "integer", "description": "how long a result is reused; 0: never"}}}
_TYPED_COLUMNS = {"type": "array", "items": {"type": "object", "required": ["name", "type", "duckdb_type"],
                                             "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                                                            "duckdb_type": {"type": "string"}}}}
CATALOG_DETAIL = {**CATALOG_ENTRY, "required": [*CATALOG_ENTRY["required"], "columns"], "properties": {
    **CATALOG_ENTRY["properties"],
    "columns": {"oneOf": [_TYPED_COLUMNS, {"type": "null"}],
                "description": "the result's columns found when the endpoint was saved (null: saved unvalidated)"}}}

_ENDPOINT = path_params("namespace", "slug")
_JOB = path_params("namespace", "slug", "job_id")
_execute_answers = responses(SYNC_RESULT, 400, 401, 403, 404, 408, 413, 415, 422, 429, 500)
_execute_answers["202"] = {"description": "Accepted (async endpoint, or a sync one under Prefer: respond-async)",
                           "headers": PREFERENCE_APPLIED, "content": {"application/json": {"schema": ACCEPTED}}}
_execute_answers = with_rate_limits(_execute_answers)

OPENAPI = {
    PREFIX + "/endpoints": {"get": operation(
        "The catalog: the company's active endpoints and their parameters, as the caller may execute them",
        "data-api", responses({"type": "array", "items": CATALOG_ENTRY}, 401, 403), security=BEARER)},
    PREFIX + "/openapi.json": {"get": operation(
        "The company's own OpenAPI document: one operation per endpoint the caller may execute, with typed "
        "parameters and rows", "data-api", responses({"type": "object", "required": ["openapi", "paths"]}, 401, 403),
        security=BEARER)},
    PREFIX + "/{namespace}/{slug}": {"get": operation(
        "One endpoint of the catalog, with its result's columns", "data-api",
        responses(CATALOG_DETAIL, 401, 403, 404), security=BEARER, parameters=_ENDPOINT)},
    PREFIX + "/{namespace}/{slug}/execute": {"post": operation(
        "Execute a visualization endpoint (sync: 200 with rows; async: 202 with a job)", "data-api",
        _execute_answers, security=BEARER, parameters=[*_ENDPOINT, *EXECUTE_HEADERS],
        body=json_body(EXECUTE_BODY, required=False))},
    PREFIX + "/{namespace}/{slug}/jobs/{job_id}": {"get": operation(
        "Status and result of an execution job", "data-api", responses(JOB, 401, 403, 404, 410, 500),
        security=BEARER, parameters=_JOB)},
    PREFIX + "/{namespace}/{slug}/jobs/{job_id}/callback/redeliver": {"post": operation(
        "Deliver a finished job's result to its callback URL again (a new webhook-id)", "data-api",
        responses(REDELIVERED, 401, 403, 404, 409, 410, ok_status=202), security=BEARER, parameters=_JOB)},
}
for _path, _operations in job_paths(PREFIX, JOB).items():  # list; cancel or delete
    OPENAPI.setdefault(_path, {}).update(_operations)
results_schema.document(OPENAPI, PREFIX, JOB)  # formats, compression, .../result
