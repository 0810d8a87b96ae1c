"""A company's own OpenAPI document (``GET /api/v1/data-api/openapi.json``), from its catalog as the caller sees it.

One operation per endpoint the caller may execute, at its concrete path: the body's ``parameter_values`` typed
from the endpoint's parameters (types, enums, patterns, lengths, required, defaults, descriptions; a share
context's allowed values become the enum, a pinned parameter is left out: the server applies it), and the rows of
the answer typed from the result's ``columns`` found when the endpoint was saved. An async endpoint answers 202
with its job, and has the job's polling operation beside it. The token exchange and refresh are in the document
too, so that a client generated from it can sign in on its own.
"""

from __future__ import annotations

import re
from typing import Any, cast

from api.schemas import auth
from api.schemas.common import BEARER, COMPONENTS, TIME_OF_DAY, calendar_day, json_body, operation
from api.schemas.data_api import OPENAPI as DATA_API
from api.schemas.data_api import PREFIX, RESULT, SYNC_RESULT
from dataapi.data_api.param_values import MAX_STRING

_COMMON_SCHEMAS = cast(dict[str, Any], COMPONENTS["schemas"])  # Error, JobsError
_INT64 = {"minimum": -(2**63), "maximum": 2**63 - 1}
# What the server accepts for each parameter type, in the spelling a client sends (``param_values.coerce_value``).
_PARAM_TYPES: dict[str, dict[str, Any]] = {
    "integer": {"type": "integer", **_INT64},
    # The server takes at most 38 digits written out: strings of up to 20 digits before the point and 18 after it;
    # numbers below 1e20 and not nearer to 0 than 1e-21 (a double has 17 significant digits).
    "decimal": {"type": ["number", "string"], "exclusiveMinimum": -1e20, "exclusiveMaximum": 1e20,
                "not": {"type": "number", "exclusiveMinimum": -1e-21, "exclusiveMaximum": 1e-21, "not": {"const": 0}},
                "pattern": r"^[+-]?[0-9]{1,20}(\.[0-9]{1,18})?$",
                "description": "a decimal number (a JSON number, or a string to keep every digit)"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date", "pattern": f"^{calendar_day('-')}$"},
    "datetime": {"type": "string", "format": "date-time",
                 "pattern": f"^{calendar_day('-')}[T ]{TIME_OF_DAY}$"},
}
_INT64_TYPES = ("BIGINT", "UINTEGER")  # the "bigint" columns whose values always fit a signed 64-bit integer
# The JSON value of a result column of each type (``activities.duck.serialise``); every column may be null.
_COLUMN_TYPES: dict[str, dict[str, Any]] = {
    "varchar": {"type": "string"}, "integer": {"type": "integer"}, "double": {"type": "number"},
    "decimal": {"type": "number"}, "boolean": {"type": "boolean"}, "date": {"type": "string", "format": "date"},
    "timestamp": {"type": "string"}, "time": {"type": "string"}, "uuid": {"type": "string", "format": "uuid"},
    "blob": {"type": "string", "contentEncoding": "base64"}, "interval": {"type": "string"},
}


def company_document(title: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The document of ``entries``: catalog entries of one company with their ``columns``
    (``catalog.catalog_entry``), as one caller sees them."""
    names = _Names()
    schemas: dict[str, Any] = {**_COMMON_SCHEMAS}
    paths: dict[str, Any] = {path: ops for path, ops in auth.OPENAPI.items() if "/permissions" not in path}
    for entry in entries:
        base = names.unique(f"{entry['namespace']}-{entry['slug']}")
        schemas[base + "Parameters"] = parameters_schema(entry["parameters"])
        schemas[base + "Row"] = row_schema(entry.get("columns"))
        sync = entry["execution_mode"] == "sync"
        schemas[base + "Result"] = _result(base + "Row", SYNC_RESULT if sync else RESULT)
        endpoint = f"{PREFIX}/{entry['namespace']}/{entry['slug']}"
        paths[endpoint + "/execute"] = {"post": _execute(entry, base)}
        if not sync or "202" in _generic("/execute", "post")["responses"]:  # a job to poll
            job_result = base + ("JobResult" if sync else "Result")
            schemas[job_result] = _result(base + "Row", RESULT)
            schemas[base + "Job"] = _job(base + "Job", job_result)
            paths[endpoint + "/jobs/{job_id}"] = {**_other_methods("/jobs/{job_id}", base), "get": _poll(entry, base)}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0",
                 "description": "The endpoints this caller may execute, with their parameters and result rows. "
                                "Sign in with `POST /api/v1/auth/api-key`, then send `Authorization: Bearer "
                                "<access_token>`."},
        "paths": paths,
        "components": {**COMPONENTS, "schemas": schemas},
    }


def parameters_schema(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """``parameter_values`` of one endpoint: an object of its parameters, none other (pinned ones left out)."""
    properties, required = {}, []
    for p in parameters:
        if p.get("fixed"):
            continue
        properties[p["name"]] = parameter_schema(p)
        if p["required"] and p["default"] is None:
            required.append(p["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def parameter_schema(p: dict[str, Any]) -> dict[str, Any]:
    """One parameter's value as the server takes it: its type's JSON, the catalog's constraints; null when the
    parameter is optional (the SQL then gets NULL, not the default)."""
    if p["type"] in ("string", "enum"):
        schema: dict[str, Any] = {"type": "string"}
        if p["type"] == "string":
            schema["maxLength"] = p.get("max_length") or MAX_STRING
            if p.get("pattern"):
                schema["pattern"] = _anchored(p["pattern"])
            schema["not"] = {"type": "string", "pattern": "\\x00"}  # text: no NUL character
    else:
        schema = dict(_PARAM_TYPES[p["type"]])
    nullable = not p["required"] and (p["type"] == "enum" or "allowed_values" not in p)
    if "allowed_values" in p:  # an enum's values, or what a share context allows this caller
        schema["enum"] = list(p["allowed_values"])
        if nullable:  # one enum and null (generators make one enum class of it, not one per spelling)
            schema = {"anyOf": [schema, {"type": "null"}]}
    elif nullable:
        schema["type"] = [*_types(schema), "null"]
    if p["default"] is not None:
        schema["default"] = p["default"]
    description = " ".join(filter(None, [p.get("description"), schema.pop("description", None)]))
    if description:
        schema["description"] = description
    return schema


def row_schema(columns: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One row of the result: an object of the columns (each may be null); any object when the endpoint was saved
    without validation, so its columns are not known."""
    if columns is None:
        return {"type": "object", "description": "The columns are not known (the endpoint was saved unvalidated)"}
    properties = {}
    for c in columns:
        value = dict(_COLUMN_TYPES.get(c["type"], {}))
        if c["type"] == "bigint" and c.get("duckdb_type") in _INT64_TYPES:
            value = {"type": "integer"}
        elif c["type"] == "bigint":  # wider than 64 bits: a string when it does not fit
            value = {"type": ["integer", "string"]}
        if "type" in value:
            value["type"] = [*_types(value), "null"]
        value["description"] = f"{c['type']} ({c.get('duckdb_type', c['type'])})"
        properties[c["name"]] = value
    return {"type": "object", "properties": properties, "required": [c["name"] for c in columns],
            "additionalProperties": False}


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema["type"]
    return list(t) if isinstance(t, list) else [t]


def _anchored(pattern: str) -> str:
    """The server matches a pattern against the whole value (RE2 fullmatch); JSON Schema searches."""
    return f"^(?:{pattern})$"


def _result(row: str, generic: dict[str, Any]) -> dict[str, Any]:
    """A result of the global document (a sync answer, a job's result) with its rows typed."""
    return {**generic, "properties": {**generic["properties"], "rows": {"type": "array", "items": _ref(row)}}}


def _job(name: str, result: str) -> dict[str, Any]:
    """The generic job (``GET .../jobs/{job_id}``) with its result's rows typed."""
    generic = _generic("/jobs/{job_id}", "get")["responses"]["200"]["content"]["application/json"]["schema"]
    properties = {**generic["properties"], "result": {"oneOf": [_ref(result), {"type": "null"}]}}
    return {**generic, "title": name, "properties": properties}


def _execute(entry: dict[str, Any], base: str) -> dict[str, Any]:
    """The generic execute operation at the endpoint's path: its body's parameter_values typed, its 200's rows
    typed (a sync endpoint), its errors, headers and rate limits as they are."""
    sync = entry["execution_mode"] == "sync"
    generic = _generic("/execute", "post")
    needed = "required" in parameters_schema(entry["parameters"])
    # null is no values at all: every parameter takes its default.
    values = _ref(base + "Parameters") if needed else {"anyOf": [_ref(base + "Parameters"), {"type": "null"}]}
    body: dict[str, Any] = {"type": "object", "properties": {"parameter_values": values},
                            "additionalProperties": False}
    if not sync:
        body["properties"]["callback_url"] = {
            "type": ["string", "null"], "format": "uri", "pattern": r"^https://[^/?#\s]+",
            "description": "An HTTPS URL of a public host (not an internal address nor a special-use name such as "
                           "`.test` or `.local`: 422 INVALID_CALLBACK_URL) the result is delivered to (Standard "
                           "Webhooks) when the job finishes"}
    if needed:
        body["required"] = ["parameter_values"]
    answers = dict(generic["responses"])
    if sync:
        answers["200"] = _typed(answers["200"], _ref(base + "Result"))
    else:
        answers.pop("200", None)
    if "202" in answers:
        answers["202"] = {**answers["202"], "description": "Accepted: poll the job at "
                          f"{PREFIX}/{entry['namespace']}/{entry['slug']}/jobs/{{job_id}}"}
    summary = entry["description"] or f"Execute {entry['namespace']}/{entry['slug']}"
    return operation(summary, entry["namespace"], answers, security=BEARER, parameters=_concrete(generic) or None,
                     body=json_body(body, required=needed), operationId=f"execute_{base}",
                     description=f"`{entry['namespace']}/{entry['slug']}` ({entry['execution_mode']}; at most "
                                 f"{entry['max_rows']} rows)")


def _poll(entry: dict[str, Any], base: str) -> dict[str, Any]:
    generic = _generic("/jobs/{job_id}", "get")
    answers = {**generic["responses"], "200": _typed(generic["responses"]["200"], _ref(base + "Job"))}
    return operation(f"The job of {entry['namespace']}/{entry['slug']}: status, and the rows once completed",
                     entry["namespace"], answers, security=BEARER, parameters=_concrete(generic),
                     operationId=f"get_job_{base}")


def _generic(tail: str, method: str) -> dict[str, Any]:
    """The operation of the global document at ``{namespace}/{slug}`` + ``tail``."""
    op: dict[str, Any] = DATA_API[PREFIX + "/{namespace}/{slug}" + tail][method]
    return op


def _concrete(op: dict[str, Any]) -> list[dict[str, Any]]:
    """Its parameters but the path's namespace and slug, which a concrete path fills."""
    return [p for p in op.get("parameters", []) if not (p["in"] == "path" and p["name"] in ("namespace", "slug"))]


def _typed(answer: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """An answer with its JSON body's schema replaced (its other media types kept)."""
    return {**answer, "content": {**answer.get("content", {}), "application/json": {"schema": schema}}}


def _other_methods(tail: str, base: str) -> dict[str, Any]:
    """The operations of the generic path ``{namespace}/{slug}`` + ``tail`` this document does not type itself (a
    job's DELETE), at the concrete path: the document lists every method the server answers there."""
    out = {}
    for method, op in DATA_API.get(PREFIX + "/{namespace}/{slug}" + tail, {}).items():
        out[method] = {**op, "parameters": _concrete(op), "operationId": f"{method}_job_{base}"}
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class _Names:
    """Component names of endpoints (``default/vendas-por-regiao`` -> ``DefaultVendasPorRegiao``), unique."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def unique(self, text: str) -> str:
        name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", text) if part)
        candidate, n = name, 2
        while candidate in self.taken:
            candidate, n = f"{name}{n}", n + 1
        self.taken.add(candidate)
        return candidate
