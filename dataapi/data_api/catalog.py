"""The catalog: what a caller may execute, as they may execute it.

Each active endpoint of the caller's company with its parameters (type, required, default, allowed values,
pattern, maximum length, description) as the caller's share contexts leave them: a pinned parameter is shown as
``fixed`` with its value, an allowed list narrows ``allowed_values``. One endpoint's entry adds the result's
``columns`` found by validation at save (``validate.describe_sql``; null when it was saved without validation).
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from dataapi.data_api.definitions import specs_of
from dataapi.data_api.endpoints import find_endpoint
from dataapi.data_api.param_values import ParamError, coerce_value
from dataapi.data_api.params import ParamSpec
from dataapi.data_api.share_contexts import effective_share_context
from dataapi.models import Endpoint, pk


def list_catalog(session: Session, caller: Any) -> list[dict[str, Any]]:
    """The caller's company's active endpoints, by namespace and slug."""
    rows = session.exec(select(Endpoint).where(Endpoint.company_id == caller.company_id, Endpoint.active)
                        .order_by(Endpoint.namespace, Endpoint.slug)).all()
    return [_entry(session, caller, e) for e in rows]


def catalog_entry(session: Session, caller: Any, namespace: str, slug: str) -> dict[str, Any] | None:
    """One active endpoint's entry, with its result's columns; None when the company has no such endpoint."""
    endpoint = find_endpoint(session, caller.company_id, namespace, slug)
    if endpoint is None:
        return None
    entry = _entry(session, caller, endpoint)
    entry["columns"] = json.loads(endpoint.columns) if endpoint.columns is not None else None
    return entry


def _entry(session: Session, caller: Any, endpoint: Endpoint) -> dict[str, Any]:
    share = effective_share_context(session.connection(), caller.company_id, caller.user_id, caller.api_key_id,
                                    pk(endpoint))
    rules = share.rules if share is not None else {}
    return {
        "namespace": endpoint.namespace, "slug": endpoint.slug, "description": endpoint.description,
        "execution_mode": endpoint.execution_mode, "max_rows": endpoint.max_rows,
        "cache_seconds": endpoint.cache_seconds,
        "parameters": [_parameter(spec, rules.get(spec.name, {})) for spec in specs_of(endpoint)],
    }


def _parameter(spec: ParamSpec, rule: dict) -> dict[str, Any]:
    p: dict[str, Any] = {**spec.to_dict(), "fixed": False}
    if "pinned" in rule:  # applied by the server: the caller sends nothing (or the same value)
        value = _value(spec, rule["pinned"])
        p.update(fixed=True, value=value, required=False, default=value)
    elif "allowed" in rule:  # the caller must send (or default to) one of these
        allowed = [v for v in (_value(spec, raw) for raw in rule["allowed"]) if v is not None]
        p["allowed_values"] = [v for v in allowed if spec.type != "enum" or v in spec.allowed_values]
    return p


def _value(spec: ParamSpec, raw: Any) -> Any:
    """A share context's value as the caller would send it (canonical); None when it fits no value of the type."""
    try:
        return coerce_value(spec, raw)
    except ParamError:
        return None
