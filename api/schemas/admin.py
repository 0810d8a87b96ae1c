"""OpenAPI of the Admin API (``/api/v1/admin``)."""

from __future__ import annotations

from api.schemas.common import BEARER, OBJECT, OBJECTS, json_body, operation, path_params, responses

PREFIX = "/api/v1/admin"


def _op(summary: str, ok: dict, *errors: int, body: bool = False, status: int = 200, params: tuple[str, ...] = (),
        may_create: bool = False) -> dict:
    answers = responses(ok, *errors, ok_status=status)
    if status == 204:
        answers["204"] = {"description": "Done"}
    if may_create:  # an idempotent PUT answers 201 when the object did not exist yet
        answers["201"] = {**answers[str(status)], "description": "Created"}
    return operation(summary, "admin", answers, security=BEARER, parameters=path_params(*params) if params else None,
                     body=json_body(OBJECT) if body else None)


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
                            403, 409, 413, 415, 422, body=True, status=201))},
    PREFIX + "/endpoints/{namespace}/{slug}": {
        "get": _op("Read an endpoint", OBJECT, 401, 403, 404, params=_EP),
        "put": _saving(_op("Create or replace an endpoint (idempotent; its SQL validated on the company's "
                           "database)", OBJECT, 400, 401, 403, 413, 415, 422, body=True, params=_EP, may_create=True)),
        "delete": _op("Delete an endpoint that never ran", OBJECT, 401, 403, 404, 409, status=204, params=_EP)},
    PREFIX + "/share-contexts": {
        "get": _op("List share contexts", OBJECTS, 401, 403) | _SHARE,
        "post": _op("Bind a share context to a user or API key", OBJECT, 400, 401, 403, 404, body=True, status=201)
        | _SHARE},
    PREFIX + "/share-contexts/{context_id}": {
        "delete": _op("Delete a share context", OBJECT, 401, 403, 404, status=204, params=("context_id",)) | _SHARE},
    PREFIX + "/users": {
        "get": _op("List users", OBJECTS, 401, 403),
        "post": _op("Create a user", OBJECT, 400, 401, 403, body=True, status=201)},
    PREFIX + "/users/{name}/keys": {
        "post": _op("Create an API key (the secret is returned once)", OBJECT, 400, 401, 403, 404, status=201,
                    params=("name",))},
    PREFIX + "/repositories": {
        "get": _op("List the company's job repositories", OBJECTS, 401, 403),
        "post": _op("Register a repository (python files + entry point, or a DuckDB script)", OBJECT, 400, 401, 403,
                    409, body=True, status=201)},
    PREFIX + "/repositories/{repo_id}": {
        "get": _op("Read a repository", OBJECT, 401, 403, 404, params=("repo_id",)),
        "put": _op("Create or replace a repository (idempotent)", OBJECT, 400, 401, 403, body=True,
                   params=("repo_id",), may_create=True)},
    PREFIX + "/webhook-secret": {
        "get": _op("The company's webhook signing secret (whsec_...)", OBJECT, 401, 403)},
    PREFIX + "/webhook-secret/rotate": {
        "post": _op("Rotate the webhook signing secret (the old one also signs during the grace)", OBJECT, 401, 403)},
    PREFIX + "/keys/{key_id}": {
        "delete": _op("Revoke an API key", OBJECT, 401, 403, 404, status=204, params=("key_id",))},
}
