"""``/api/v1/admin``: a company's admins manage endpoints, share contexts, users, API keys, repositories and the
webhook signing secret.

Everything is scoped to the caller's company; another company's object is a plain 404. Handlers parse the
request and call the domain's services (the same ones the CLI calls); errors are ``DomainError``s, rendered by
the Admin API's mount."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import requires
from api.context import context
from api.errors import JSONResponse
from api.requests import read_json_object
from api.schemas.admin import OPENAPI, PREFIX
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.data_api import definitions, endpoints, share_contexts
from dataapi.data_api.params import DefinitionError
from dataapi.data_api.validate import SqlProblem
from dataapi.errors import Conflict, Invalid, InvalidDefinition, NotFound
from dataapi.identity import service as identity
from dataapi.jobs_api import repositories
from dataapi.models import Company, Endpoint, ShareContextRow, pk
from dataapi.settings import Settings
from dataapi.statuses import UserKind

__all__ = ["OPENAPI", "PREFIX", "routes"]


async def _in_company(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(session, company, *args)`` in one transaction, for the caller's company."""
    company_id = request.state.claims.company_id

    def run(session: Session) -> Any:
        company = session.get(Company, company_id)
        try:
            return fn(session, company, *args)
        except SqlProblem as e:  # well-formed, but the SQL does not prepare: 422, as the issue of a value
            raise Invalid(str(e), code="INVALID_SQL") from None
        except DefinitionError as e:  # the Data API's definition errors carry no status of their own
            raise InvalidDefinition(str(e)) from None

    return await context(request).transaction(run)


# --- endpoints ---------------------------------------------------------------------------------------

def _endpoint(session: Session, company: Company, namespace: str, slug: str) -> Endpoint:
    endpoint = endpoints.find_endpoint(session, pk(company), namespace, slug, active_only=False)
    if endpoint is None:
        raise NotFound("Endpoint not found")
    return endpoint


def _save_endpoint(session: Session, company: Company, data: dict, settings: Settings, validate: bool,
                   create_only: bool) -> tuple[dict, bool]:
    d = definitions.parse_definition(data, settings.default_max_rows, settings.max_rows_cap,
                                     settings.export_max_rows_cap)
    if create_only and endpoints.find_endpoint(session, pk(company), d.namespace, d.slug, active_only=False):
        raise Conflict(f"Endpoint {d.namespace}/{d.slug} already exists; use PUT to change it")
    columns, warnings = endpoints.validated(settings, company, d, validate=validate)
    endpoint, created = endpoints.upsert_endpoint(session, company, d, columns)
    body = definitions.describe_endpoint(endpoint)
    if warnings:
        body["warnings"] = warnings
    return body, created


def _delete_endpoint(session: Session, company: Company, namespace: str, slug: str) -> None:
    if not endpoints.delete_endpoint(session, _endpoint(session, company, namespace, slug)):
        raise Conflict("Endpoint has jobs; set active to false instead of deleting it")


def _validate(request: Request) -> bool:
    """``?validate=false``: save without binding the SQL on the company's database (its table is not loaded
    yet); the answer carries a warning."""
    value = request.query_params.get("validate", "true")
    if value not in ("true", "false"):
        raise InvalidDefinition("'validate' must be true or false")
    return value == "true"


@requires("admin:endpoints")
async def list_endpoints(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        definitions.describe_endpoint(e) for e in endpoints.list_endpoints(s, c.id)]))


@requires("admin:endpoints")
async def create_endpoint(request: Request) -> Response:
    data = await read_json_object(request)
    body, _ = await _in_company(request, _save_endpoint, data, context(request).settings, _validate(request), True)
    return JSONResponse(body, status_code=201)


@requires("admin:endpoints")
async def put_endpoint(request: Request) -> Response:
    data = await read_json_object(request)
    namespace, slug = request.path_params["namespace"], request.path_params["slug"]
    if data.get("namespace", namespace) != namespace or data.get("slug", slug) != slug:
        raise InvalidDefinition("namespace and slug in the body must match the path")
    body, created = await _in_company(request, _save_endpoint, {**data, "namespace": namespace, "slug": slug},
                                      context(request).settings, _validate(request), False)
    return JSONResponse(body, status_code=201 if created else 200)


@requires("admin:endpoints")
async def get_endpoint(request: Request) -> Response:
    p = request.path_params
    return JSONResponse(await _in_company(request, lambda s, c: definitions.describe_endpoint(
        _endpoint(s, c, p["namespace"], p["slug"]))))


@requires("admin:endpoints")
async def delete_endpoint(request: Request) -> Response:
    await _in_company(request, _delete_endpoint, request.path_params["namespace"], request.path_params["slug"])
    return Response(status_code=204)


# --- share contexts ----------------------------------------------------------------------------------
# Their own action, not admin:endpoints: a share context restricts what a user may see, so whoever may publish
# endpoints (VisualizationManager) must not be able to lift the restriction placed on them or on others.

def _create_share_context(session: Session, company: Company, data: dict) -> dict:
    endpoint = None
    if data.get("endpoint") is not None:
        ref = data["endpoint"]
        namespace, _, slug = ref.rpartition("/") if isinstance(ref, str) else ("", "", "")
        endpoint = _endpoint(session, company, namespace or "default", slug)
    for name in ("user", "api_key"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidDefinition(f"'{name}' must be a string")
    row = share_contexts.create_share_context(session, company, data.get("rules"), user_name=data.get("user"),
                                              api_key=data.get("api_key"), endpoint=endpoint)
    return share_contexts.describe_share_context(session, row)


def _delete_share_context(session: Session, company: Company, raw: str) -> None:
    row = session.get(ShareContextRow, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 18 else None
    if row is None or row.company_id != pk(company):
        raise NotFound("Share context not found")
    session.delete(row)


@requires("admin:share_contexts")
async def list_share_contexts(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        share_contexts.describe_share_context(s, r) for r in share_contexts.list_share_contexts(s, c.id)]))


@requires("admin:share_contexts")
async def create_share_context(request: Request) -> Response:
    data = await read_json_object(request)
    unknown = set(data) - {"user", "api_key", "endpoint", "rules"}
    if unknown:
        raise InvalidDefinition(f"unknown field {sorted(unknown)[0]!r}")
    return JSONResponse(await _in_company(request, _create_share_context, data), status_code=201)


@requires("admin:share_contexts")
async def delete_share_context(request: Request) -> Response:
    await _in_company(request, _delete_share_context, request.path_params["context_id"])
    return Response(status_code=204)


# --- users and keys ----------------------------------------------------------------------------------

@requires("admin:users")
async def list_users(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        identity.describe_user(s, u) for u in identity.list_users(s, c)]))


@requires("admin:users")
async def create_user(request: Request) -> Response:
    data = await read_json_object(request)
    policies = data.get("policies", [])
    kind = data.get("kind", UserKind.INTEGRATION)
    if not isinstance(data.get("name"), str) or not isinstance(policies, list) \
            or not all(isinstance(p, str) for p in policies) or kind not in tuple(UserKind):
        raise InvalidDefinition("expected {name: str, policies: [str], kind?: integration|human}")
    return JSONResponse(await _in_company(request, lambda s, c: identity.describe_user(
        s, identity.create_user(s, c, data["name"], policies, kind))), status_code=201)


@requires("admin:keys")
async def create_key(request: Request) -> Response:
    hasher = context(request).hasher
    return JSONResponse(await _in_company(request, lambda s, c: identity.issue_api_key(
        s, hasher, c, request.path_params["name"])), status_code=201)


@requires("admin:keys")
async def revoke_key(request: Request) -> Response:
    await _in_company(request, lambda s, c: identity.revoke_api_key(s, request.path_params["key_id"],
                                                                    company_id=pk(c)))
    return Response(status_code=204)


# --- repositories (Jobs API) ----------------------------------------------------------------------------

@requires("admin:repositories")
async def list_repositories(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: [
        repositories.describe_repository(r) for r in repositories.list_repositories(s, c.id)]))


@requires("admin:repositories")
async def create_repository(request: Request) -> Response:
    data = await read_json_object(request)
    return JSONResponse(await _in_company(request, lambda s, c: repositories.describe_repository(
        repositories.create_repository(s, c.id, data), with_code=True)), status_code=201)


@requires("admin:repositories")
async def put_repository(request: Request) -> Response:
    data = await read_json_object(request)
    repo_id = request.path_params["repo_id"]
    if data.get("id", repo_id) != repo_id:  # before any query: a mismatch is the request's, whatever exists
        raise InvalidDefinition("id in the body must match the path")

    def put(session: Session, company: Company) -> tuple[dict, bool]:
        repo, created = repositories.put_repository(session, pk(company), repo_id, data)
        return repositories.describe_repository(repo, with_code=True), created

    body, created = await _in_company(request, put)
    return JSONResponse(body, status_code=201 if created else 200)


@requires("admin:repositories")
async def get_repository(request: Request) -> Response:
    return JSONResponse(await _in_company(request, lambda s, c: repositories.describe_repository(
        repositories.get_repository(s, c.id, request.path_params["repo_id"]), with_code=True)))


# --- webhook signing secret --------------------------------------------------------------------------

@requires("admin:webhooks")
async def get_webhook_secret(request: Request) -> Response:
    ctx = context(request)
    return JSONResponse(await _in_company(request, lambda s, c: webhook_secrets.describe(
        s, ctx.box, c.id, ctx.settings.webhook_secret_grace_seconds)))


@requires("admin:webhooks")
async def rotate_webhook_secret(request: Request) -> Response:
    """A new signing secret; the previous one also signs (a second signature) during the grace period."""
    ctx = context(request)
    return JSONResponse(await _in_company(request, lambda s, c: webhook_secrets.rotate(
        s, ctx.box, c.id, ctx.settings.webhook_secret_grace_seconds)))


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
