"""Keys and users (CompanyAdmin): the company's users with their policies and API keys; create a user (an
integration, or a person with a one-time invitation link), create a key (the secret shown once), revoke a key,
disable or enable a user (disabling ends their console sessions), and share contexts.

Every change goes through the identity and share-context services the Admin API calls."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.admin import _create_share_context, _delete_share_context
from api.console.web import PREFIX, ctx_of, form, page, redirect, render, text, visitor_of
from dataapi.data_api.params import DefinitionError
from dataapi.errors import DomainError, Forbidden, NotFound
from dataapi.identity import passwords, sessions
from dataapi.identity import service as identity
from dataapi.identity.policies import POLICIES
from dataapi.identity.service import SecretHasher
from dataapi.identity.sessions import Visitor
from dataapi.models import ApiKey, Company, pk
from dataapi.statuses import UserKind


def _company(session: Session, visitor: Visitor) -> Company:
    company = session.get(Company, visitor.company_id)
    assert company is not None
    return company


def _overview(session: Session, visitor: Visitor) -> dict[str, Any]:
    company = _company(session, visitor)
    keys = session.exec(select(ApiKey).where(ApiKey.company_id == visitor.company_id)
                        .order_by(col(ApiKey.created_at).desc())).all()
    by_user: dict[int, list[ApiKey]] = {}
    for k in keys:
        by_user.setdefault(k.user_id, []).append(k)
    users = []
    for u in identity.list_users(session, company):
        users.append({**identity.describe_user(session, u), "keys": by_user.get(pk(u), []),
                      "has_password": u.password_hash is not None, "me": pk(u) == visitor.user_id})
    shares = []
    if visitor.may("admin:share_contexts"):
        from dataapi.data_api import share_contexts
        shares = [share_contexts.describe_share_context(session, r)
                  for r in share_contexts.list_share_contexts(session, visitor.company_id)]
    return {"users": users, "shares": shares}


async def _page(request: Request, status: int = 200, **values: Any) -> Response:
    visitor = visitor_of(request)
    data = await ctx_of(request).transaction(_overview, visitor)
    return render(request, "users.html", status=status, policies=list(POLICIES), kinds=list(UserKind),
                  may_keys=visitor.may("admin:keys"), may_shares=visitor.may("admin:share_contexts"),
                  **data, **values)


@page("admin:users")
async def users_page(request: Request) -> Response:
    return await _page(request)


def _create_user(session: Session, visitor: Visitor, name: str, kind: str, policies: list[str]) -> str | None:
    user = identity.create_user(session, _company(session, visitor), name, policies, kind)
    return passwords.create_invitation(session, user) if kind == UserKind.HUMAN else None


@page("admin:users")
async def create_user(request: Request) -> Response:
    data = await form(request)
    name, kind = text(data, "name"), text(data, "kind") or UserKind.INTEGRATION
    policies = [p for p in data.getlist("policy") if isinstance(p, str)]
    try:
        token = await ctx_of(request).transaction(_create_user, visitor_of(request), name, kind, policies)
    except DomainError as e:
        return await _page(request, 400, error=e.message)
    invitation = _invitation_url(request, token) if token else None
    return await _page(request, 201, notice=f"Created {kind} user {name}.", invitation=invitation,
                       invited=name if token else None)


def _invitation_url(request: Request, token: str) -> str:
    return f"{ctx_of(request).settings.base_url}{PREFIX}/invitation/{token}"


def _user(session: Session, visitor: Visitor, name: str) -> Any:
    return identity.require_user(session, _company(session, visitor), name)


def _user_action(session: Session, visitor: Visitor, name: str, action: str) -> str | None:
    user = _user(session, visitor, name)
    if action in ("disable", "enable"):
        if pk(user) == visitor.user_id and action == "disable":
            raise Forbidden("You cannot disable yourself")
        identity.set_user_disabled(session, user, action == "disable")
        if action == "disable":
            sessions.end_user_sessions(session, pk(user))
        return None
    if action == "invite":
        return passwords.create_invitation(session, user)
    raise NotFound("No such action")


@page("admin:users")
async def user_action(request: Request) -> Response:
    data = await form(request)
    name, action = text(data, "name"), text(data, "action")
    try:
        token = await ctx_of(request).transaction(_user_action, visitor_of(request), name, action)
    except DomainError as e:
        if isinstance(e, NotFound):
            raise
        return await _page(request, e.status, error=e.message)
    if token:
        return await _page(request, invitation=_invitation_url(request, token), invited=name)
    return redirect("/users")


# --- keys -----------------------------------------------------------------------------------------------

def _create_key(session: Session, visitor: Visitor, hasher: SecretHasher, name: str) -> dict:
    return identity.issue_api_key(session, hasher, _company(session, visitor), name)


@page("admin:keys")
async def create_key(request: Request) -> Response:
    data = await form(request)
    name = text(data, "name")
    try:
        key = await ctx_of(request).transaction(_create_key, visitor_of(request), ctx_of(request).hasher, name)
    except DomainError as e:
        if isinstance(e, NotFound):
            raise
        return await _page(request, e.status, error=e.message)
    return await _page(request, 201, new_key=key, new_key_json=json.dumps(key), key_user=name)


@page("admin:keys")
async def revoke_key(request: Request) -> Response:
    key_id = text(await form(request), "key_id")
    visitor = visitor_of(request)
    await ctx_of(request).transaction(lambda s: identity.revoke_api_key(s, key_id, company_id=visitor.company_id))
    return await _page(request, notice=f"Revoked {key_id}; it no longer logs in.")


# --- share contexts -------------------------------------------------------------------------------------

@page("admin:share_contexts")
async def create_share(request: Request) -> Response:
    data = await form(request)
    visitor = visitor_of(request)
    target, who = text(data, "target"), text(data, "who")
    try:
        rules = json.loads(text(data, "rules") or "null")
    except json.JSONDecodeError as e:
        return await _page(request, 400, error=f"rules are not JSON: {e.msg} (line {e.lineno}, column {e.colno})")
    body = {"rules": rules, "endpoint": text(data, "endpoint") or None,
            "user" if target == "user" else "api_key": who}

    def create(session: Session) -> dict:
        try:
            return _create_share_context(session, _company(session, visitor), body)
        except DefinitionError as e:
            raise DomainError(e.message, code="INVALID_DEFINITION") from None

    try:
        await ctx_of(request).transaction(create)
    except DomainError as e:
        return await _page(request, e.status, error=e.message)
    return redirect("/users#share-contexts")


@page("admin:share_contexts")
async def delete_share(request: Request) -> Response:
    raw = text(await form(request), "id")
    visitor = visitor_of(request)
    await ctx_of(request).transaction(lambda s: _delete_share_context(s, _company(s, visitor), raw))
    return redirect("/users#share-contexts")


routes = [
    Route(PREFIX + "/users", users_page, methods=["GET"]),
    Route(PREFIX + "/users", create_user, methods=["POST"]),
    Route(PREFIX + "/users/action", user_action, methods=["POST"]),
    Route(PREFIX + "/keys", create_key, methods=["POST"]),
    Route(PREFIX + "/keys/revoke", revoke_key, methods=["POST"]),
    Route(PREFIX + "/share-contexts", create_share, methods=["POST"]),
    Route(PREFIX + "/share-contexts/delete", delete_share, methods=["POST"]),
]
