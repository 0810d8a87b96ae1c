"""OpenAPI of the Jobs API (``/api/v1/job``, the vBrain dialect: errors are ``{"error": ...}``)."""

from __future__ import annotations

from api.schemas.common import API_KEY, JOBS_ERROR, OBJECT, calendar_day, operation, path_params, responses
from api.schemas.data_api_jobs import JOBS_EXECUTE_HEADER
from api.schemas.limits import with_rate_limits

PREFIX = "/api/v1/job"
IDENTITY_HEADERS = ("username", "organization_id", "application_id", "client_id", "x-api-key")

_HEADER_DOCS = {
    "username": "The API key's user name (else 403); the job's created_by",
    "organization_id": "The company slug of the API key (else 401)",
    "application_id": "Application: a job is visible only under the one it was created with",
    "client_id": "Client: a job is visible only under the one it was created with",
    "x-api-key": "`<api_key>.<api_secret>`; its user owns the jobs it creates (a holder of jobs:all_clients "
                 "sees every user's)",
    "repository_id": "The repository's id",
}
_ERROR_DOCS = {
    401: "Invalid API key (or not of organization_id's company)",
    403: "The key lacks the permission, or username is not the key's user name",
    404: "No such repository, or no such job visible to this key under this application and client",
    410: "The job expired: its result and files were removed after the retention (expires_at)",
    429: "Too many wrong secrets for this key id from this address (a correct secret is never refused)",
}
_NOT_FINISHED = {"type": "object", "properties": {"message": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


# Each identity header: not blank, at most 200 characters, no control characters (else 400 "Missing"/"Invalid").
_HEADER = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[^\x00-\x1f]*[^\x00-\x20][^\x00-\x1f]*$"}


def _headers(with_repository: bool = False) -> list[dict]:
    names = (*IDENTITY_HEADERS, "repository_id") if with_repository else IDENTITY_HEADERS
    return [{"name": n, "in": "header", "required": True, "description": _HEADER_DOCS[n],
             "schema": _HEADER} for n in names]


def _resp(ok_schema: dict | None, *errors: int, ok: int = 200, media: str = "application/json") -> dict:
    """The Jobs API's answers: 202 is "not finished yet" (a message, not an error), 429 says when to retry."""
    out = responses(ok_schema or OBJECT, *errors, ok_status=ok, error_schema=JOBS_ERROR, media=media,
                    reasons=_ERROR_DOCS, other_reason="See the Jobs API reference")
    if "202" in out:
        out["202"]["content"] = {"application/json": {"schema": _NOT_FINISHED}}
    if "429" in out:
        out["429"]["headers"] = _RETRY_AFTER
    return out


def _op(summary: str, answers: dict, params: list, body: dict | None = None) -> dict:
    return operation(summary, "jobs", answers, security=API_KEY, parameters=params, body=body)


_JOB_ID = path_params("job_id")
_ZIP = {"type": "string", "format": "binary"}
_STD = (400, 401, 403, 404, 429, 503)  # 503: the metadata store or Temporal is unreachable
_MULTIPART = {"required": False, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary", "description": "A ZIP of inputs, or one .csv, .xlsx or .json"},
    "params": {"type": "object", "description": "JSON object of parameters"},
    "metadata": {"type": "object", "description": "JSON object of metadata"}}},
    "encoding": {"params": {"contentType": "application/json"}, "metadata": {"contentType": "application/json"},
                 "file": {"contentType": "application/zip, text/csv, application/json, "
                                         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}}}}}
# YYYYMMDDHHMM (UTC) of a day of the calendar (``jobs.STAMP``).
STAMP_PATTERN = rf"^{calendar_day()}(?:[01][0-9]|2[0-3])[0-5][0-9]$"
_QUERY = [{"name": n, "in": "query", "required": False,
           "description": "YYYYMMDDHHMM (UTC): jobs created from (to) this minute",
           "schema": {"type": "string", "pattern": STAMP_PATTERN}} for n in ("from_date", "to_date")]
OPENAPI = {
    PREFIX: {"get": _op("List the jobs of a repository for this organization, application and client",
                        _resp({"type": "array", "items": {"type": "string"}}, *_STD), _headers(True) + _QUERY)},
    PREFIX + "/execute": {"post": _op("Create a job (multipart: file, params, metadata)",
                                      with_rate_limits(_resp(None, *_STD, 413, 415, 422, ok=201), True),
                                      [*_headers(True), JOBS_EXECUTE_HEADER], _MULTIPART)},
    PREFIX + "/{job_id}": {
        "get": _op("A job's details (with expires_at)", _resp(None, *_STD, 410), _JOB_ID + _headers()),
        "delete": _op("Delete a job (a running one is cancelled)", _resp(None, *_STD, 500), _JOB_ID + _headers())},
    PREFIX + "/{job_id}/result": {"get": _op("A finished job's result JSON", _resp(None, *_STD, 202, 410, 500),
                                             _JOB_ID + _headers())},
    PREFIX + "/{job_id}/params": {"get": _op("A job's params JSON", _resp(None, *_STD, 410), _JOB_ID + _headers())},
    PREFIX + "/{job_id}/output": {"get": _op("A finished job's output folder as a ZIP",
                                             _resp(_ZIP, *_STD, 202, 410, 500, media="application/zip"),
                                             _JOB_ID + _headers())},
    PREFIX + "/{job_id}/logs": {"get": _op("A job's logs (stdout, stderr, platform steps) as a ZIP",
                                           _resp(_ZIP, *_STD, 202, 410, media="application/zip"),
                                           _JOB_ID + _headers())},
}
