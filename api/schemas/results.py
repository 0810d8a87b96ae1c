"""OpenAPI of results in other formats: ``Accept``/``?format=`` and ``Accept-Encoding`` on the sync execute,
``GET .../jobs/{job_id}/result`` (paging), and what an export endpoint's job body adds to the seed's."""

from __future__ import annotations

from typing import Any

from api.schemas.common import BEARER, operation, path_params, responses
from dataapi.data_api.results import MEDIA_TYPES, PAGE_MAX, Format

_FORMAT_NAMES = [str(f) for f in Format]
FORMAT_PARAMS = [
    {"name": "Accept", "in": "header", "required": False, "schema": {"type": "string"},
     "description": f"{', '.join(MEDIA_TYPES.values())} (default application/json, the seed's shape); any other "
                    "is 406 NOT_ACCEPTABLE"},
    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": _FORMAT_NAMES},
     "description": "the format by name; wins over Accept"},
    {"name": "Accept-Encoding", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "zstd or gzip: JSON, CSV and NDJSON answers are compressed and streamed (Content-Encoding)"},
]
PAGE_PARAMS = [
    {"name": "offset", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": PAGE_MAX, "default": 0}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
     "description": "rows from offset (default: to the end)"},
]
EXPORT_FIELDS = {
    "total_row_count": {"type": "integer", "description": "export endpoints: every row stored (up to export_max_rows)"},
    "export_truncated": {"type": "boolean", "description": "export endpoints: the query had more rows than stored"},
    "next": {"type": ["string", "null"], "description": "export endpoints: .../result?offset=&limit= of the rows "
                                                         "after the first max_rows (null: none)"},
}
_PAGE_JSON = {"type": "object", "required": ["columns", "rows", "row_count", "offset", "total_row_count", "next"],
              "properties": {"columns": {"type": "array", "items": {"type": "object"}},
                             "rows": {"type": "array", "items": {"type": "object"}},
                             "row_count": {"type": "integer"}, "offset": {"type": "integer"},
                             "total_row_count": {"type": "integer"}, "next": {"type": ["string", "null"]}}}
_BINARY = {"type": "string", "format": "binary"}
_PAGE_HEADERS = {
    "X-Total-Row-Count": {"schema": {"type": "integer"}, "description": "rows of the whole stored result"},
    "Link": {"schema": {"type": "string"}, "description": '<...result?offset=&limit=>; rel="next" when rows follow'},
}


def other_formats(ok: dict) -> dict:
    """The 200 of ``ok`` (a responses object) offered in every format, and the 406."""
    answer = ok["200"]
    answer["content"] |= {media: {"schema": _BINARY if f in (Format.PARQUET, Format.ARROW) else {"type": "string"}}
                          for f, media in MEDIA_TYPES.items() if f != Format.JSON}
    ok["406"] = {"description": "None of the accepted formats is available (NOT_ACCEPTABLE)",
                 "content": ok.get("400", {}).get("content", {})}
    return ok


def result_paths(prefix: str) -> dict[str, Any]:
    answers = other_formats(responses(_PAGE_JSON, 400, 401, 403, 404, 409, 410))
    answers["200"]["headers"] = {**answers["200"].get("headers", {}), **_PAGE_HEADERS}
    return {prefix + "/{namespace}/{slug}/jobs/{job_id}/result": {"get": operation(
        "A completed job's rows in any format, paged with offset and limit", "data-api", answers, security=BEARER,
        parameters=[*path_params("namespace", "slug", "job_id"), *PAGE_PARAMS, *FORMAT_PARAMS])}}


def document(openapi: dict[str, Any], prefix: str, job: dict[str, Any]) -> None:
    """Adds the result route, the formats of the sync execute and the export fields of the job body."""
    openapi.update(result_paths(prefix))
    execute = openapi[prefix + "/{namespace}/{slug}/execute"]["post"]
    execute["parameters"] = [*execute.get("parameters", []), *FORMAT_PARAMS]
    other_formats(execute["responses"])
    job["properties"] |= EXPORT_FIELDS
