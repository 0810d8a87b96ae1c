"""Visualization endpoints in the metadata store: every query of them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlmodel import Session, select

from dataapi.data_api import statements
from dataapi.data_api.definitions import EndpointDef
from dataapi.data_api.validate import check_placeholders, describe_sql
from dataapi.models import Company, Endpoint, Job, ShareContextRow, pk, utcnow
from dataapi.settings import Settings

NOT_VALIDATED = ("the SQL was not checked against the company's database (validation off): its tables, columns "
                 "and types are checked when it first runs, and the catalog lists no columns for it")


@dataclass(frozen=True)
class Executable:
    """What an execution reads of its endpoint. Every call reads it, so it is one Core select: the ORM's
    identity map and unit of work cost CPU on each call and buy nothing on a read."""

    id: int
    sql: str
    parameters: str  # JSON list of ParamSpec dicts
    execution_mode: str
    max_rows: int
    export_max_rows: int | None
    cache_seconds: int



def validated(settings: Settings, company: Company, d: EndpointDef, *, validate: bool = True,
              ) -> tuple[list[dict[str, str]] | None, list[str]]:
    """Validation at save: every declared parameter used, then the SQL bound on the company's current database
    (``validate.describe_sql``). Returns the result's columns (None when ``validate`` is off) and warnings;
    raises ``validate.SqlProblem``."""
    check_placeholders(d.sql, d.parameters)
    if not validate:
        return None, [NOT_VALIDATED]
    return describe_sql(settings.resolved_data_dir, company.slug, d.sql, d.parameters,
                        memory_limit=settings.query_memory_limit, threads=settings.query_threads), []


def upsert_endpoint(session: Session, company: Company, d: EndpointDef,
                    columns: list[dict[str, str]] | None = None) -> tuple[Endpoint, bool]:
    """Creates or updates ``d``; ``columns``: its result's columns from ``validated`` (None: unknown)."""
    endpoint = session.exec(select(Endpoint).where(
        Endpoint.company_id == company.id, Endpoint.namespace == d.namespace, Endpoint.slug == d.slug)).first()
    created = endpoint is None
    if endpoint is None:
        endpoint = Endpoint(company_id=pk(company), namespace=d.namespace, slug=d.slug, sql=d.sql)
    endpoint.sql = d.sql
    endpoint.parameters = json.dumps([p.to_dict() for p in d.parameters])
    endpoint.execution_mode, endpoint.max_rows = d.execution_mode, d.max_rows
    endpoint.export_max_rows = d.export_max_rows
    endpoint.cache_seconds = d.cache_seconds
    endpoint.active, endpoint.description = d.active, d.description
    endpoint.columns = json.dumps(columns) if columns is not None else None
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
    row = conn.execute(statements.EXECUTABLE_AT,
                       {"company_id": company_id, "namespace": namespace, "slug": slug}).first()
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
