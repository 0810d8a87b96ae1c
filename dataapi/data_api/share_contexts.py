"""Share contexts: restrictions on the parameter values a user or an API key may execute an endpoint with
(pinned values, allowed sets), bound to one endpoint or to all of the company's; and their merging."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection
from sqlmodel import Session, col, select

from dataapi.data_api import statements
from dataapi.data_api.definitions import specs_of
from dataapi.data_api.params import DefinitionError, ShareContext, validate_share_context
from dataapi.models import ApiKey, Company, Endpoint, ShareContextRow, User, pk
from dataapi.timestamps import iso


def create_share_context(session: Session, company: Company, rules: Any, *, user_name: str | None = None,
                         api_key: str | None = None, endpoint: Endpoint | None = None) -> ShareContextRow:
    if (user_name is None) == (api_key is None):
        raise DefinitionError("a share context is bound to exactly one of 'user' or 'api_key'")
    if not isinstance(rules, dict) or not rules:
        raise DefinitionError("'rules' must be a non-empty object {parameter: {pinned|allowed}}")
    share = ShareContext.from_dict(rules)
    if endpoint is not None:
        validate_share_context(share, specs_of(endpoint))
    row = ShareContextRow(company_id=pk(company), endpoint_id=endpoint.id if endpoint else None,
                          rules=json.dumps(share.to_dict()))
    if user_name is not None:
        user = session.exec(select(User).where(User.company_id == company.id, User.name == user_name)).first()
        if user is None:
            raise DefinitionError(f"user {user_name!r} does not exist")
        row.user_id = user.id
    else:
        key = session.exec(select(ApiKey).where(ApiKey.company_id == company.id, ApiKey.key_id == api_key)).first()
        if key is None:
            raise DefinitionError(f"API key {api_key!r} does not exist")
        row.api_key_id = key.id
    session.add(row)
    session.flush()
    return row


def describe_share_context(session: Session, row: ShareContextRow) -> dict[str, Any]:
    user = session.get(User, row.user_id) if row.user_id else None
    key = session.get(ApiKey, row.api_key_id) if row.api_key_id else None
    endpoint = session.get(Endpoint, row.endpoint_id) if row.endpoint_id else None
    return {
        "id": row.id, "user": user.name if user else None, "api_key": key.key_id if key else None,
        "endpoint": f"{endpoint.namespace}/{endpoint.slug}" if endpoint else None,
        "rules": json.loads(row.rules), "created_at": iso(row.created_at),
    }


def list_share_contexts(session: Session, company_id: int) -> list[ShareContextRow]:
    return list(session.exec(select(ShareContextRow).where(ShareContextRow.company_id == company_id)
                             .order_by(col(ShareContextRow.id))).all())


def effective_share_context(conn: Connection, company_id: int, user_id: int, api_key_id: int | None,
                            endpoint_id: int) -> ShareContext | None:
    """Every context bound to the caller (user or key) for this endpoint or all endpoints, merged so
    that each restriction holds: pins must agree (else nothing is allowed) and allowed sets intersect."""
    values = {"company_id": company_id, "endpoint_id": endpoint_id, "user_id": user_id}
    if api_key_id is None:
        rules = conn.execute(statements.RULES_OF_USER, values).scalars().all()
    else:
        rules = conn.execute(statements.RULES_OF_USER_OR_KEY, {**values, "api_key_id": api_key_id}).scalars().all()
    if not rules:
        return None
    merged: dict[str, dict] = {}
    for text in rules:
        for name, rule in json.loads(text).items():
            merged[name] = merge_rule(merged.get(name), rule)
    return ShareContext.from_dict(merged)


def merge_rule(a: dict | None, b: dict) -> dict:
    """Two rules on one parameter, both holding: pins must agree (and be allowed), allowed sets intersect."""
    if a is None:
        return b
    if "pinned" in a or "pinned" in b:
        pins = {json.dumps(r["pinned"]) for r in (a, b) if "pinned" in r}
        allowed = [r["allowed"] for r in (a, b) if "allowed" in r]
        pin = json.loads(next(iter(pins)))
        if len(pins) > 1 or any(pin not in al for al in allowed):
            return {"allowed": []}
        return {"pinned": pin}
    return {"allowed": [v for v in a["allowed"] if v in b["allowed"]]}
