"""``/api/v1/admin``: a company's admins manage endpoints, share contexts, users and API keys.

Everything is scoped to the caller's company; another company's object is a plain 404."""

from __future__ import annotations

from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import requires
from api.errors import ApiError, JSONResponse
from api.openapi import json_body, responses
from api.requests import read_json_object
from dataapi import callbacks, identity, jobs
from dataapi import endpoints as store
from dataapi.db import session_scope
from dataapi.identity import IdentityError
from dataapi.models import Company, ShareContextRow, User
from dataapi.params import DefinitionError

PREFIX = "/api/v1/admin"


def _not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


async def _in_company(request: Request, fn, *args):
    """Runs ``fn(session, company, *args)`` in a transaction of the caller's company, mapping domain
    errors to 400 INVALID_DEFINITION."""
    ctx, claims = request.app.state.ctx, request.state.claims

    def run():
        with session_scope(ctx.engine) as session:
            company = session.get(Company, claims.company_id)
            try:
                return fn(session, company, *args)
            except (DefinitionError, IdentityError, ValueError) as e:  # RepositoryError is a ValueError
                raise ApiError(400, "INVALID_DEFINITION", str(e)) from None

    return await run_in_threadpool(run)


def _settings(request: Request):
    return request.app.state.ctx.settings


# --- endpoints ---------------------------------------------------------------------------------------

@requires("admin:endpoints")
async def list_endpoints(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        store.describe_endpoint(e) for e in store.list_endpoints(s, c.id)]))


@requires("admin:endpoints")
async def create_endpoint(request: Request) -> Response:
    data = await read_json_object(request)
    settings = _settings(request)

    def create(session, company):
        d = store.parse_definition(data, settings.default_max_rows, settings.max_rows_cap)
        if store.find_endpoint(session, company.id, d.namespace, d.slug, active_only=False):
            raise ApiError(409, "CONFLICT", f"Endpoint {d.namespace}/{d.slug} already exists; use PUT to change it")
        endpoint, _ = store.upsert_endpoint(session, company, d)
        return store.describe_endpoint(endpoint)

    return JSONResponse(await _in_company(request, create), status_code=201)


@requires("admin:endpoints")
async def put_endpoint(request: Request) -> Response:
    data = await read_json_object(request)
    settings = _settings(request)
    namespace, slug = request.path_params["namespace"], request.path_params["slug"]
    if data.get("namespace", namespace) != namespace or data.get("slug", slug) != slug:
        raise ApiError(400, "INVALID_DEFINITION", "namespace and slug in the body must match the path")

    def put(session, company):
        d = store.parse_definition({**data, "namespace": namespace, "slug": slug},
                                   settings.default_max_rows, settings.max_rows_cap)
        endpoint, created = store.upsert_endpoint(session, company, d)
        return store.describe_endpoint(endpoint), created

    body, created = await _in_company(request, put)
    return JSONResponse(body, status_code=201 if created else 200)


def _endpoint_or_404(session, company, namespace: str, slug: str):
    endpoint = store.find_endpoint(session, company.id, namespace, slug, active_only=False)
    if endpoint is None:
        raise _not_found("Endpoint")
    return endpoint


@requires("admin:endpoints")
async def get_endpoint(request: Request) -> Response:
    p = request.path_params
    return JSONResponse(await _in_company(request, lambda s, c: store.describe_endpoint(
        _endpoint_or_404(s, c, p["namespace"], p["slug"]))))


@requires("admin:endpoints")
async def delete_endpoint(request: Request) -> Response:
    p = request.path_params

    def delete(session, company):
        if not store.delete_endpoint(session, _endpoint_or_404(session, company, p["namespace"], p["slug"])):
            raise ApiError(409, "CONFLICT", "Endpoint has jobs; set active to false instead of deleting it")

    await _in_company(request, delete)
    return Response(status_code=204)


# --- share contexts ----------------------------------------------------------------------------------
# Their own action, not admin:endpoints: a share context restricts what a user may see, so whoever may publish
# endpoints (VisualizationManager) must not be able to lift the restriction placed on them or on others.

@requires("admin:share_contexts")
async def list_share_contexts(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        store.describe_share_context(s, r) for r in store.list_share_contexts(s, c.id)]))


@requires("admin:share_contexts")
async def create_share_context(request: Request) -> Response:
    data = await read_json_object(request)
    unknown = set(data) - {"user", "api_key", "endpoint", "rules"}
    if unknown:
        raise ApiError(400, "INVALID_DEFINITION", f"unknown field {sorted(unknown)[0]!r}")

    def create(session, company):
        endpoint = None
        if data.get("endpoint") is not None:
            ref = data["endpoint"]
            namespace, _, slug = ref.rpartition("/") if isinstance(ref, str) else ("", "", "")
            endpoint = _endpoint_or_404(session, company, namespace or "default", slug)
        for name in ("user", "api_key"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise DefinitionError(f"'{name}' must be a string")
        row = store.create_share_context(session, company, data.get("rules"), user_name=data.get("user"),
                                         api_key=data.get("api_key"), endpoint=endpoint)
        return store.describe_share_context(session, row)

    return JSONResponse(await _in_company(request, create), status_code=201)


@requires("admin:share_contexts")
async def delete_share_context(request: Request) -> Response:
    raw = request.path_params["context_id"]

    def delete(session, company):
        row = session.get(ShareContextRow, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 18 else None
        if row is None or row.company_id != company.id:
            raise _not_found("Share context")
        session.delete(row)

    await _in_company(request, delete)
    return Response(status_code=204)


# --- users and keys ----------------------------------------------------------------------------------

def _describe_user(session, user) -> dict:
    return {"id": user.id, "name": user.name, "kind": user.kind, "disabled": user.disabled,
            "policies": identity.user_policies(session, user.id)}


@requires("admin:users")
async def list_users(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        _describe_user(s, u) for u in s.exec(select(User).where(User.company_id == c.id).order_by(User.id)).all()]))


@requires("admin:users")
async def create_user(request: Request) -> Response:
    data = await read_json_object(request)
    policies = data.get("policies", [])
    kind = data.get("kind", "integration")
    if not isinstance(data.get("name"), str) or not isinstance(policies, list) \
            or not all(isinstance(p, str) for p in policies) or kind not in ("integration", "human"):
        raise ApiError(400, "INVALID_DEFINITION", "expected {name: str, policies: [str], kind?: integration|human}")
    return JSONResponse(await _in_company(request, lambda s, c: _describe_user(
        s, identity.create_user(s, c, data["name"], policies, kind))), status_code=201)


@requires("admin:keys")
async def create_key(request: Request) -> Response:
    ctx, name = request.app.state.ctx, request.path_params["name"]

    def create(session, company):
        user = identity.get_user(session, company, name)
        if user is None:
            raise _not_found("User")
        key, secret = identity.create_api_key(session, ctx.hasher, company, user)
        return {"company_slug": company.slug, "api_key": key.key_id, "api_secret": secret}

    return JSONResponse(await _in_company(request, create), status_code=201)


@requires("admin:keys")
async def revoke_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]

    def revoke(session, company):
        try:
            identity.revoke_api_key(session, key_id, company_id=company.id)
        except IdentityError:
            raise _not_found("API key") from None

    await _in_company(request, revoke)
    return Response(status_code=204)


# --- repositories (Jobs API) ----------------------------------------------------------------------------

def _upsert_repository(session, company, data):
    from activities.runners import validate_code  # pure Python: safe in the API process

    repo, created = jobs.upsert_repository(session, company.id, data, validate_code)
    return jobs.describe_repository(repo, with_code=True), created


@requires("admin:repositories")
async def list_repositories(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        jobs.describe_repository(r) for r in jobs.list_repositories(s, c.id)]))


@requires("admin:repositories")
async def create_repository(request: Request) -> Response:
    data = await read_json_object(request)

    def create(session, company):
        if isinstance(data.get("id"), str) and jobs.find_repository(session, company.id, data["id"]):
            raise ApiError(409, "CONFLICT", f"Repository {data['id']} already exists; use PUT to change it")
        return _upsert_repository(session, company, data)[0]

    return JSONResponse(await _in_company(request, create), status_code=201)


@requires("admin:repositories")
async def put_repository(request: Request) -> Response:
    data = await read_json_object(request)
    repo_id = request.path_params["repo_id"]
    if data.get("id", repo_id) != repo_id:
        raise ApiError(400, "INVALID_DEFINITION", "id in the body must match the path")
    body, created = await _in_company(request, lambda s, c: _upsert_repository(s, c, {**data, "id": repo_id}))
    return JSONResponse(body, status_code=201 if created else 200)


@requires("admin:repositories")
async def get_repository(request: Request) -> Response:
    def get(session, company):
        repo = jobs.find_repository(session, company.id, request.path_params["repo_id"])
        if repo is None:
            raise _not_found("Repository")
        return jobs.describe_repository(repo, with_code=True)

    return JSONResponse(await _in_company(request, get))


# --- webhook signing secret --------------------------------------------------------------------------

@requires("admin:webhooks")
async def get_webhook_secret(request: Request) -> Response:
    ctx = request.app.state.ctx
    return JSONResponse(await _in_company(request, lambda s, c: callbacks.describe_secrets(
        s, ctx.box, c.id, ctx.settings.webhook_secret_grace_seconds)))


@requires("admin:webhooks")
async def rotate_webhook_secret(request: Request) -> Response:
    """A new signing secret; the previous one also signs (a second signature) during the grace period."""
    ctx = request.app.state.ctx

    def rotate(session, company):
        callbacks.rotate_secret(session, ctx.box, company.id)
        return callbacks.describe_secrets(session, ctx.box, company.id, ctx.settings.webhook_secret_grace_seconds)

    return JSONResponse(await _in_company(request, rotate))


routes = [
    Route(PREFIX + "/endpoints", list_endpoints, methods=["GET"]),
    Route(PREFIX + "/endpoints", create_endpoint, methods=["POST"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}", get_endpoint, methods=["GET"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}", put_endpoint, methods=["PUT"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}", delete_endpoint, methods=["DELETE"]),
    Route(PREFIX + "/share-contexts", list_share_contexts, methods=["GET"]),
    Route(PREFIX + "/share-contexts", create_share_context, methods=["POST"]),
    Route(PREFIX + "/share-contexts/{context_id}", delete_share_context, methods=["DELETE"]),
    Route(PREFIX + "/users", list_users, methods=["GET"]),
    Route(PREFIX + "/users", create_user, methods=["POST"]),
    Route(PREFIX + "/users/{name}/keys", create_key, methods=["POST"]),
    Route(PREFIX + "/keys/{key_id}", revoke_key, methods=["DELETE"]),
    Route(PREFIX + "/repositories", list_repositories, methods=["GET"]),
    Route(PREFIX + "/repositories", create_repository, methods=["POST"]),
    Route(PREFIX + "/repositories/{repo_id}", get_repository, methods=["GET"]),
    Route(PREFIX + "/repositories/{repo_id}", put_repository, methods=["PUT"]),
    Route(PREFIX + "/webhook-secret", get_webhook_secret, methods=["GET"]),
    Route(PREFIX + "/webhook-secret/rotate", rotate_webhook_secret, methods=["POST"]),
]

_OBJ = {"type": "object"}
_LIST = {"type": "array", "items": _OBJ}
_SEC = [{"bearer": []}]


def _op(summary: str, ok: dict, *errors: int, body: bool = False, status: int = 200, params=(),
        may_create: bool = False) -> dict:
    op = {"summary": summary, "tags": ["admin"], "security": _SEC,
          "responses": responses(ok, *errors, ok_status=status)}
    if status == 204:
        op["responses"]["204"] = {"description": "Done"}
    if may_create:  # an idempotent PUT answers 201 when the object did not exist yet
        op["responses"]["201"] = {**op["responses"][str(status)], "description": "Created"}
    if body:
        op["requestBody"] = json_body(_OBJ)
    if params:
        op["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params]
    return op


_EP = ("namespace", "slug")
_SHARE = {"description": "Needs the `admin:share_contexts` action (policy CompanyAdmin); `admin:endpoints` "
                         "(VisualizationManager) is not enough."}
OPENAPI = {
    PREFIX + "/endpoints": {
        "get": _op("List the company's endpoints", _LIST, 401, 403),
        "post": _op("Create an endpoint", _OBJ, 400, 401, 403, 409, 413, 415, body=True, status=201)},
    PREFIX + "/endpoints/{namespace}/{slug}": {
        "get": _op("Read an endpoint", _OBJ, 401, 403, 404, params=_EP),
        "put": _op("Create or replace an endpoint (idempotent)", _OBJ, 400, 401, 403, 413, 415, body=True, params=_EP,
                   may_create=True),
        "delete": _op("Delete an endpoint that never ran", _OBJ, 401, 403, 404, 409, status=204, params=_EP)},
    PREFIX + "/share-contexts": {
        "get": _op("List share contexts", _LIST, 401, 403) | _SHARE,
        "post": _op("Bind a share context to a user or API key", _OBJ, 400, 401, 403, 404, body=True, status=201)
        | _SHARE},
    PREFIX + "/share-contexts/{context_id}": {
        "delete": _op("Delete a share context", _OBJ, 401, 403, 404, status=204, params=("context_id",)) | _SHARE},
    PREFIX + "/users": {
        "get": _op("List users", _LIST, 401, 403),
        "post": _op("Create a user", _OBJ, 400, 401, 403, body=True, status=201)},
    PREFIX + "/users/{name}/keys": {
        "post": _op("Create an API key (the secret is returned once)", _OBJ, 400, 401, 403, 404, status=201,
                    params=("name",))},
    PREFIX + "/repositories": {
        "get": _op("List the company's job repositories", _LIST, 401, 403),
        "post": _op("Register a repository (python files + entry point, or a DuckDB script)", _OBJ, 400, 401, 403,
                    409, body=True, status=201)},
    PREFIX + "/repositories/{repo_id}": {
        "get": _op("Read a repository", _OBJ, 401, 403, 404, params=("repo_id",)),
        "put": _op("Create or replace a repository (idempotent)", _OBJ, 400, 401, 403, body=True,
                   params=("repo_id",), may_create=True)},
    PREFIX + "/webhook-secret": {
        "get": _op("The company's webhook signing secret (whsec_...)", _OBJ, 401, 403)},
    PREFIX + "/webhook-secret/rotate": {
        "post": _op("Rotate the webhook signing secret (the old one also signs during the grace)", _OBJ, 401, 403)},
    PREFIX + "/keys/{key_id}": {
        "delete": _op("Revoke an API key", _OBJ, 401, 403, 404, status=204, params=("key_id",))},
}
