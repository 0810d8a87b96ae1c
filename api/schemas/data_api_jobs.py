"""OpenAPI of the caller's jobs of an endpoint (list; cancel or delete one) and of the execute headers
``Idempotency-Key`` and ``Prefer`` (``api/data_api_jobs.py``, ``api/idempotency.py``, ``api/prefer.py``)."""

from __future__ import annotations

from api.schemas.common import BEARER, TIME_OF_DAY, calendar_day, operation, path_params, responses
from dataapi.data_api.job_list import DEFAULT_LIMIT, LISTED_STATUSES, MAX_LIMIT

_SUMMARY = {"type": "object", "required": ["job_id", "status", "mode", "error", "row_count", "created_at",
                                           "completed_at", "polling_url"], "properties": {
    "job_id": {"type": "string"}, "status": {"type": "string", "enum": list(LISTED_STATUSES)},
    "mode": {"type": "string", "enum": ["sync", "async"]}, "error": {"type": ["string", "null"]},
    "row_count": {"type": ["integer", "null"]}, "created_at": {"type": "string", "format": "date-time"},
    "completed_at": {"type": ["string", "null"], "format": "date-time"}, "polling_url": {"type": "string"}}}
JOB_PAGE = {"type": "object", "required": ["jobs", "next_cursor"], "properties": {
    "jobs": {"type": "array", "items": _SUMMARY},
    "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null: last page"}}}


def _query(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


# A date, or a date and time (to the minute, second or microsecond; Z or an offset), as job_list._instant takes them.
_INSTANT = {"type": "string", "pattern": f"^{calendar_day('-')}(?:[T ]{TIME_OF_DAY})?$"}
_LIST_PARAMS = [
    *path_params("namespace", "slug"),
    _query("status", "only jobs in this status", {"type": "string", "enum": list(LISTED_STATUSES)}),
    _query("from", "created at or after (ISO 8601; UTC unless an offset is given)", _INSTANT),
    _query("to", "created at or before (ISO 8601; UTC unless an offset is given)", _INSTANT),
    _query("cursor", "the `next_cursor` of the previous page (opaque)", {"type": "string"}),
    _query("limit", f"jobs per page (default {DEFAULT_LIMIT})",
           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
]

EXECUTE_HEADERS = [
    {"name": "Idempotency-Key", "in": "header", "required": False,
     "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
     "description": "1-255 visible ASCII characters, per company and user. The same key and body within 24 h answer "
                    "as the first request did (same job_id); the same key with another body is 422 "
                    "IDEMPOTENCY_KEY_REUSED"},
    {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "RFC 7240 `respond-async, wait=N` on a sync endpoint: waits up to N s (at most the sync limit; "
                    "0 without wait), then 202 with a polling_url while the query runs on up to the async limit. "
                    "`Preference-Applied` says `respond-async` (202) or `wait=N` (answered within the wait)"},
]

PREFERENCE_APPLIED = {"Preference-Applied": {
    "description": "Under Prefer: `respond-async` (this 202) or `wait=N` (answered within the wait)",
    "schema": {"type": "string"}}}

JOBS_EXECUTE_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255},
    "description": "1-255 visible ASCII characters, per company and user. The same key and request (repository, "
                   "application_id, client_id, params, metadata, file name and content) within 24 h answer 201 with "
                   "the same job_id; the same key with another request is 422"}


def job_paths(prefix: str, job: dict) -> dict[str, dict]:
    """The list route, and DELETE beside GET on a job (``job``: the seed's job object)."""
    cancelled = responses(job, 401, 403, 404)
    cancelled["200"]["description"] = "A running job, cancelled: it reads failed, 'Cancelled by caller'"
    cancelled["204"] = {"description": "A finished job, deleted with its result: it answers 404 from now on"}
    return {
        prefix + "/{namespace}/{slug}/jobs": {"get": operation(
            "The caller's jobs of this endpoint, newest first, filtered and paged", "data-api",
            responses(JOB_PAGE, 400, 401, 403, 404), security=BEARER, parameters=_LIST_PARAMS)},
        prefix + "/{namespace}/{slug}/jobs/{job_id}": {"delete": operation(
            "Cancel the caller's running job, or delete its finished job and result", "data-api", cancelled,
            security=BEARER, parameters=path_params("namespace", "slug", "job_id"))},
    }
