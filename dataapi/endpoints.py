"""Visualization endpoints, share contexts and job records: the rules and every query of the Data API domain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, insert, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from dataapi import sqlguard
from dataapi.identity import valid_slug
from dataapi.models import ApiKey, Company, Endpoint, Job, ShareContextRow, User, utcnow
from dataapi.params import (
    DefinitionError,
    ParamSpec,
    ShareContext,
    validate_definition,
    validate_share_context,
)

MODES = ("sync", "async")
_FIELDS = {"namespace", "slug", "description", "sql", "parameters", "execution_mode", "max_rows", "active"}


@dataclass(frozen=True)
class EndpointDef:
    namespace: str
    slug: str
    sql: str
    parameters: tuple[ParamSpec, ...]
    execution_mode: str
    max_rows: int
    active: bool
    description: str


def parse_definition(data: Any, default_max_rows: int, max_rows_cap: int) -> EndpointDef:
    """Validates an endpoint definition (admin API body or one entry of an `endpoints apply` file)."""
    if not isinstance(data, dict):
        raise DefinitionError("an endpoint definition must be an object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise DefinitionError(f"unknown field {sorted(unknown)[0]!r}")
    namespace = data.get("namespace", "default")
    slug = data.get("slug")
    for name, value in (("namespace", namespace), ("slug", slug)):
        if not isinstance(value, str) or not valid_slug(value):
            raise DefinitionError(f"'{name}' must be kebab-case (lowercase letters, digits and '-')")
    sql = data.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise DefinitionError("'sql' is required")
    if len(sql) > 100_000:
        raise DefinitionError("'sql' is longer than 100000 characters")
    try:
        sqlguard.check(sql)  # checked again when it runs (activities.duck): stored SQL predates the list
    except sqlguard.SqlNotAllowed as e:
        raise DefinitionError(f"'sql': {e.message}") from None
    raw_params = data.get("parameters", [])
    if not isinstance(raw_params, list):
        raise DefinitionError("'parameters' must be a list")
    specs = tuple(ParamSpec.from_dict(p) for p in raw_params)
    validate_definition(sql, list(specs))
    mode = data.get("execution_mode", "sync")
    if mode not in MODES:
        raise DefinitionError("'execution_mode' must be 'sync' or 'async'")
    max_rows = data.get("max_rows", default_max_rows)
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or not 1 <= max_rows <= max_rows_cap:
        raise DefinitionError(f"'max_rows' must be an integer from 1 to {max_rows_cap}")
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise DefinitionError("'active' must be a boolean")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise DefinitionError("'description' must be a string of at most 2000 characters")
    return EndpointDef(namespace, slug, sql, specs, mode, max_rows, active, description)


@dataclass(frozen=True)
class Executable:
    """What an execution reads of its endpoint. Every call reads it, so it is one Core select: the ORM's
    identity map and unit of work cost ~1 ms of CPU per call and buy nothing on a read."""

    id: int
    sql: str
    parameters: str  # JSON list of ParamSpec dicts
    execution_mode: str
    max_rows: int


_ENDPOINTS, _SHARES, _JOBS = Endpoint.__table__, ShareContextRow.__table__, Job.__table__
_EXECUTABLE = core_select(_ENDPOINTS.c.id, _ENDPOINTS.c.sql, _ENDPOINTS.c.parameters,
                          _ENDPOINTS.c.execution_mode, _ENDPOINTS.c.max_rows)

# The statements of every execution, built once and run with bound values: a statement object reused skips
# SQLAlchemy's construction and cache-key walk of a new one, which cost more than SQLite's work (on SQLite here:
# the two reads of an execution 0.95 -> 0.25 ms of CPU, the job row 0.78 -> 0.30 ms).
_EXECUTABLE_AT = _EXECUTABLE.where(_ENDPOINTS.c.company_id == bindparam("company_id"),
                                   _ENDPOINTS.c.namespace == bindparam("namespace"),
                                   _ENDPOINTS.c.slug == bindparam("slug"), _ENDPOINTS.c.active)
_RULES_FOR = core_select(_SHARES.c.rules).where(
    _SHARES.c.company_id == bindparam("company_id"),
    or_(_SHARES.c.endpoint_id.is_(None), _SHARES.c.endpoint_id == bindparam("endpoint_id")))
_RULES_OF_USER = _RULES_FOR.where(_SHARES.c.user_id == bindparam("user_id"))
_RULES_OF_USER_OR_KEY = _RULES_FOR.where(or_(_SHARES.c.user_id == bindparam("user_id"),
                                             _SHARES.c.api_key_id == bindparam("api_key_id")))
# INSERT ... ON CONFLICT DO NOTHING RETURNING id, its columns those of the values given; PostgreSQL's or SQLite's.
_JOB_INSERT = {name: dialect.insert(_JOBS).on_conflict_do_nothing(index_elements=["id"]).returning(_JOBS.c.id)
               for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_JOB_COLUMNS = frozenset(_JOBS.c.keys())  # bound values name no column by themselves: a typo would be dropped
_JOB_CREATE = insert(_JOBS)  # values bound at execution: no statement built (and cache-keyed) per job
_JOB_FINISH = update(_JOBS).where(_JOBS.c.id == bindparam("finished_id"), _JOBS.c.status == "processing")


def specs_of(endpoint: Endpoint | Executable) -> list[ParamSpec]:
    return [ParamSpec.from_dict(p, stored=True) for p in json.loads(endpoint.parameters)]


def describe_endpoint(endpoint: Endpoint) -> dict:
    return {
        "namespace": endpoint.namespace, "slug": endpoint.slug, "description": endpoint.description,
        "sql": endpoint.sql, "parameters": json.loads(endpoint.parameters),
        "execution_mode": endpoint.execution_mode, "max_rows": endpoint.max_rows, "active": endpoint.active,
        "created_at": iso(endpoint.created_at), "updated_at": iso(endpoint.updated_at),
    }


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, second precision, as in the seed's examples. Naive values are UTC."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def upsert_endpoint(session: Session, company: Company, d: EndpointDef) -> tuple[Endpoint, bool]:
    endpoint = session.exec(select(Endpoint).where(
        Endpoint.company_id == company.id, Endpoint.namespace == d.namespace, Endpoint.slug == d.slug)).first()
    created = endpoint is None
    if created:
        endpoint = Endpoint(company_id=company.id, namespace=d.namespace, slug=d.slug, sql=d.sql)
    endpoint.sql = d.sql
    endpoint.parameters = json.dumps([p.to_dict() for p in d.parameters])
    endpoint.execution_mode, endpoint.max_rows = d.execution_mode, d.max_rows
    endpoint.active, endpoint.description = d.active, d.description
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    session.flush()
    return endpoint, created


def find_endpoint(session: Session, company_id: int, namespace: str, slug: str,
                  active_only: bool = True) -> Endpoint | None:
    query = select(Endpoint).where(Endpoint.company_id == company_id, Endpoint.namespace == namespace,
                                   Endpoint.slug == slug)
    if active_only:
        query = query.where(Endpoint.active)
    return session.exec(query).first()


def executable_endpoint(conn: Connection, company_id: int, namespace: str, slug: str) -> Executable | None:
    """The active endpoint ``namespace/slug`` of the company, as an execution needs it."""
    row = conn.execute(_EXECUTABLE_AT, {"company_id": company_id, "namespace": namespace, "slug": slug}).first()
    return Executable(*row) if row is not None else None


def list_endpoints(session: Session, company_id: int) -> list[Endpoint]:
    return list(session.exec(select(Endpoint).where(Endpoint.company_id == company_id)
                             .order_by(Endpoint.namespace, Endpoint.slug)).all())


def delete_endpoint(session: Session, endpoint: Endpoint) -> bool:
    """Deletes an endpoint that never ran; one with jobs is kept (deactivate it instead). Returns deleted."""
    if session.exec(select(Job.id).where(Job.endpoint_id == endpoint.id).limit(1)).first():
        return False
    for ctx in session.exec(select(ShareContextRow).where(ShareContextRow.endpoint_id == endpoint.id)).all():
        session.delete(ctx)
    session.delete(endpoint)
    session.flush()
    return True


# --- share contexts ----------------------------------------------------------------------------------

def create_share_context(session: Session, company: Company, rules: Any, *, user_name: str | None = None,
                         api_key: str | None = None, endpoint: Endpoint | None = None) -> ShareContextRow:
    if (user_name is None) == (api_key is None):
        raise DefinitionError("a share context is bound to exactly one of 'user' or 'api_key'")
    if not isinstance(rules, dict) or not rules:
        raise DefinitionError("'rules' must be a non-empty object {parameter: {pinned|allowed}}")
    share = ShareContext.from_dict(rules)
    if endpoint is not None:
        validate_share_context(share, specs_of(endpoint))
    row = ShareContextRow(company_id=company.id, endpoint_id=endpoint.id if endpoint else None,
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


def describe_share_context(session: Session, row: ShareContextRow) -> dict:
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
                             .order_by(ShareContextRow.id)).all())


def effective_share_context(conn: Connection, company_id: int, user_id: int, api_key_id: int | None,
                            endpoint_id: int) -> ShareContext | None:
    """Every context bound to the caller (user or key) for this endpoint or all endpoints, merged so
    that each restriction holds: pins must agree (else nothing is allowed) and allowed sets intersect."""
    values = {"company_id": company_id, "endpoint_id": endpoint_id, "user_id": user_id}
    if api_key_id is None:
        rules = conn.execute(_RULES_OF_USER, values).scalars().all()
    else:
        rules = conn.execute(_RULES_OF_USER_OR_KEY, {**values, "api_key_id": api_key_id}).scalars().all()
    if not rules:
        return None
    merged: dict[str, dict] = {}
    for text in rules:
        for name, rule in json.loads(text).items():
            merged[name] = _merge_rule(merged.get(name), rule)
    return ShareContext.from_dict(merged)


def _merge_rule(a: dict | None, b: dict) -> dict:
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


# --- jobs --------------------------------------------------------------------------------------------

def create_job(conn: Connection, **fields) -> None:
    """Inserts a job row (``processing``, created now unless given)."""
    values = {"status": "processing", "created_at": utcnow(), **fields}
    _check_job_columns(values.keys())
    conn.execute(_JOB_CREATE, values)


def _check_job_columns(names) -> None:
    """Values bound to the prebuilt job statements must name columns: a misspelt one would be dropped unseen."""
    unknown = set(names) - _JOB_COLUMNS
    if unknown:
        raise ValueError(f"not a job column: {sorted(unknown)}")


def job_body(job: Job, result: bytes | None) -> dict:
    """The seed's job object (GET job, and the body of its callback); ``result`` is the stored JSON document."""
    return {
        "job_id": job.id, "status": job.status,
        "result": orjson.Fragment(result) if job.status == "completed" and result is not None else None,
        "error": job.error if job.status == "failed" else None,
        "created_at": iso(job.created_at), "completed_at": iso(job.completed_at),
    }


def find_job(session: Session, company_id: int, endpoint_id: int, job_id: str) -> Job | None:
    job = session.get(Job, job_id)
    if job is None or job.company_id != company_id or job.endpoint_id != endpoint_id:
        return None
    return job


def finish_job(conn: Connection, job_id: str, *, status: str, insert: dict | None = None, **fields) -> None:
    """Records a job's outcome. A job still ``processing`` is updated; one already finished is left alone
    (the first outcome wins). ``insert`` creates the row when it does not exist yet (sync executions): one
    INSERT that does nothing on a conflict, then the guarded UPDATE only if the row was there. (RETURNING says
    whether a row went in: psycopg's rowcount for ON CONFLICT DO NOTHING is -1.)"""
    values = {"status": status, "completed_at": utcnow(), **fields}
    _check_job_columns(values.keys() | (insert or {}).keys())
    if insert is not None:
        statement = _JOB_INSERT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
        created = conn.execute(statement, {"id": job_id, "created_at": values["completed_at"], **insert,
                                           **values}).first()
        if created is not None:
            return
    conn.execute(_JOB_FINISH, {"finished_id": job_id, **values})
