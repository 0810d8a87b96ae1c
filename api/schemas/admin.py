"""OpenAPI of the Admin API (``/api/v1/admin``)."""

from __future__ import annotations

from typing import Any

from api.schemas.common import BEARER, OBJECT, OBJECTS, json_body, operation, path_params, responses
from dataapi.data_api.definitions import MAX_CACHE_SECONDS, MODES
from dataapi.data_api.param_values import MAX_STRING
from dataapi.data_api.params import MAX_PATTERN, NAME_RE, TYPES
from dataapi.identity.policies import POLICIES
from dataapi.jobs_api.repositories import REPO_ID_RE, RUNNERS
from dataapi.settings import Settings
from dataapi.statuses import UserKind

PREFIX = "/api/v1/admin"

# The request bodies, with every constraint a JSON Schema can say. What it cannot (that the SQL binds on the
# company's database, that a default fits its parameter's type, that a repository's code compiles, that a share
# context's rules name the endpoint's parameters) is refused with 400 INVALID_DEFINITION or 422 INVALID_SQL.
_SLUG = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-z0-9]+(?:-[a-z0-9]+)*$"}
_TEXT = {"type": "string", "maxLength": 2000}
_PARAMETER = {
    "type": "object", "required": ["name", "type"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "pattern": NAME_RE.pattern.replace(r"\Z", "$")},
        "type": {"type": "string", "enum": list(TYPES)}, "required": {"type": "boolean"},
        "default": {"description": "a value of the parameter's type"}, "description": _TEXT,
        "allowed_values": {"type": "array", "minItems": 1, "uniqueItems": True,
                           "items": {"type": "string", "minLength": 1}, "description": "enum parameters only"},
        "pattern": {"type": "string", "maxLength": MAX_PATTERN,
                    "description": "string parameters only: an RE2 regular expression the whole value matches"},
        "max_length": {"type": "integer", "minimum": 1, "maximum": MAX_STRING,
                       "description": "string parameters only"}}}
_MAX_ROWS_CAP = Settings.model_fields["max_rows_cap"].default
_ENDPOINT: dict[str, Any] = {
    "type": "object", "required": ["slug", "sql"], "additionalProperties": False, "properties": {
        "namespace": {**_SLUG, "default": "default"}, "slug": _SLUG, "description": _TEXT,
        "sql": {"type": "string", "minLength": 1, "maxLength": 100_000, "pattern": r"\S",
                "description": "One SELECT; `$name` placeholders for the parameters. Bound on the company's "
                               "database when saved (422 INVALID_SQL with DuckDB's message when it does not bind)"},
        "parameters": {"type": "array", "items": _PARAMETER},
        "execution_mode": {"type": "string", "enum": list(MODES), "default": "sync"},
        "max_rows": {"type": "integer", "minimum": 1, "maximum": _MAX_ROWS_CAP,
                     "description": "at most the server's DATAAPI_MAX_ROWS_CAP"},
        "active": {"type": "boolean", "default": True},
        "export_max_rows": {"type": "integer", "minimum": 1,
                            "description": "async endpoints only: from max_rows to DATAAPI_EXPORT_MAX_ROWS_CAP"},
        "cache_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_CACHE_SECONDS}}}
_ENDPOINT_AT_PATH = {**_ENDPOINT, "required": ["sql"],
                     "description": "namespace and slug come from the path (in the body, they must match it)"}
_RULE = {"oneOf": [
    {"type": "object", "required": ["pinned"], "additionalProperties": False,
     "properties": {"pinned": {"type": ["string", "number", "boolean"]}}},
    {"type": "object", "required": ["allowed"], "additionalProperties": False,
     "properties": {"allowed": {"type": "array", "items": {"type": ["string", "number", "boolean"]}}}}]}
_SHARE_CONTEXT = {
    "type": "object", "required": ["rules"], "additionalProperties": False,
    "properties": {"user": {"type": "string", "minLength": 1}, "api_key": {"type": "string", "minLength": 1},
                   "endpoint": {"type": "string", "description": "`namespace/slug`; every endpoint when absent"},
                   "rules": {"type": "object", "propertyNames": {"pattern": NAME_RE.pattern.replace(r"\Z", "$")},
                             "additionalProperties": _RULE}},
    "oneOf": [{"required": ["user"], "not": {"required": ["api_key"]}},
              {"required": ["api_key"], "not": {"required": ["user"]}}],
    "description": "Bound to exactly one of `user` or `api_key`"}
_USER = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
    "policies": {"type": "array", "items": {"type": "string", "enum": list(POLICIES)}},
    "kind": {"type": "string", "enum": list(UserKind), "default": UserKind.INTEGRATION}}}
_REPOSITORY = {
    "type": "object", "required": ["name", "runner", "code"], "additionalProperties": False, "properties": {
        "id": {"type": "string", "pattern": REPO_ID_RE.pattern.replace(r"\Z", "$")},
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "runner": {"type": "string", "enum": list(RUNNERS)},
        "code": {"type": "object", "description": "python: {files: {path: text}, entry_point}; sql: {script}"},
        "default_params": {"type": "object"}, "metadata": {"type": "object"}}}


def _op(summary: str, ok: dict, *errors: int, body: dict | None = None, status: int = 200,
        params: tuple[str, ...] = (), may_create: bool = False) -> dict:
    answers = responses(ok, *errors, ok_status=status)
    if status == 204:
        answers["204"] = {"description": "Done"}
    if may_create:  # an idempotent PUT answers 201 when the object did not exist yet
        answers["201"] = {**answers[str(status)], "description": "Created"}
    return operation(summary, "admin", answers, security=BEARER, parameters=path_params(*params) if params else None,
                     body=json_body(body) if body else None)


_EP = ("namespace", "slug")
# Validation at save (dataapi.data_api.validate): 422 INVALID_SQL when the SQL does not bind on the company's
# database; ?validate=false saves without that check (a warning in the answer).
_VALIDATE = {"name": "validate", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["true", "false"]},
             "description": "false: save without binding the SQL on the company's current database (its tables are "
                            "not loaded yet); the answer carries `warnings`"}


def _saving(op: dict) -> dict:
    return {**op, "parameters": [*op.get("parameters", []), _VALIDATE]}
_SHARE = {"description": "Needs the `admin:share_contexts` action (policy CompanyAdmin); `admin:endpoints` "
                         "(VisualizationManager) is not enough."}
OPENAPI = {
    PREFIX + "/endpoints": {
        "get": _op("List the company's endpoints", OBJECTS, 401, 403),
        "post": _saving(_op("Create an endpoint (its SQL validated on the company's database)", OBJECT, 400, 401,
                            403, 409, 413, 415, 422, body=_ENDPOINT, status=201))},
    PREFIX + "/endpoints/{namespace}/{slug}": {
        "get": _op("Read an endpoint", OBJECT, 401, 403, 404, params=_EP),
        "put": _saving(_op("Create or replace an endpoint (idempotent; its SQL validated on the company's "
                           "database)", OBJECT, 400, 401, 403, 413, 415, 422, body=_ENDPOINT_AT_PATH, params=_EP,
                           may_create=True)),
        "delete": _op("Delete an endpoint that never ran", OBJECT, 401, 403, 404, 409, status=204, params=_EP)},
    PREFIX + "/share-contexts": {
        "get": _op("List share contexts", OBJECTS, 401, 403) | _SHARE,
        "post": _op("Bind a share context to a user or API key", OBJECT, 400, 401, 403, 404, body=_SHARE_CONTEXT,
                    status=201)
        | _SHARE},
    PREFIX + "/share-contexts/{context_id}": {
        "delete": _op("Delete a share context", OBJECT, 401, 403, 404, status=204, params=("context_id",)) | _SHARE},
    PREFIX + "/users": {
        "get": _op("List users", OBJECTS, 401, 403),
        "post": _op("Create a user", OBJECT, 400, 401, 403, 409, body=_USER, status=201)},
    PREFIX + "/users/{name}/keys": {
        "post": _op("Create an API key (the secret is returned once)", OBJECT, 400, 401, 403, 404, status=201,
                    params=("name",))},
    PREFIX + "/repositories": {
        "get": _op("List the company's job repositories", OBJECTS, 401, 403),
        "post": _op("Register a repository (python files + entry point, or a DuckDB script)", OBJECT, 400, 401, 403,
                    409, body=_REPOSITORY, status=201)},
    PREFIX + "/repositories/{repo_id}": {
        "get": _op("Read a repository", OBJECT, 401, 403, 404, params=("repo_id",)),
        "put": _op("Create or replace a repository (idempotent)", OBJECT, 400, 401, 403, body=_REPOSITORY,
                   params=("repo_id",), may_create=True)},
    PREFIX + "/webhook-secret": {
        "get": _op("The company's webhook signing secret (whsec_...)", OBJECT, 401, 403)},
    PREFIX + "/webhook-secret/rotate": {
        "post": _op("Rotate the webhook signing secret (the old one also signs during the grace)", OBJECT, 401, 403)},
    PREFIX + "/keys/{key_id}": {
        "delete": _op("Revoke an API key", OBJECT, 401, 403, 404, status=204, params=("key_id",))},
}
