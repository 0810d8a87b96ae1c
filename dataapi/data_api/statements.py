"""The statements every execution runs, built once and run with bound values: a statement object reused skips
SQLAlchemy's construction and cache-key walk of a new one, which costs more than the database's own work on
these small reads and writes."""

from __future__ import annotations

from sqlalchemy import Table, bindparam, insert, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from dataapi.models import Endpoint, Job, ShareContextRow
from dataapi.statuses import JobStatus


def _table(model: type[SQLModel]) -> Table:
    """A model's Core table (SQLModel's typing does not declare ``__table__``)."""
    return model.metadata.tables[str(model.__tablename__)]


_ENDPOINTS = _table(Endpoint)
_SHARES = _table(ShareContextRow)
_JOBS = _table(Job)

# The active endpoint namespace/slug of a company, as an execution reads it.
EXECUTABLE_AT = core_select(
    _ENDPOINTS.c.id, _ENDPOINTS.c.sql, _ENDPOINTS.c.parameters, _ENDPOINTS.c.execution_mode,
    _ENDPOINTS.c.max_rows, _ENDPOINTS.c.export_max_rows, _ENDPOINTS.c.cache_seconds,
).where(_ENDPOINTS.c.company_id == bindparam("company_id"), _ENDPOINTS.c.namespace == bindparam("namespace"),
        _ENDPOINTS.c.slug == bindparam("slug"), _ENDPOINTS.c.active)

# The share-context rules bound to a user (or a user or their API key) for one endpoint or all endpoints.
_RULES_FOR = core_select(_SHARES.c.rules).where(
    _SHARES.c.company_id == bindparam("company_id"),
    or_(_SHARES.c.endpoint_id.is_(None), _SHARES.c.endpoint_id == bindparam("endpoint_id")))
RULES_OF_USER = _RULES_FOR.where(_SHARES.c.user_id == bindparam("user_id"))
RULES_OF_USER_OR_KEY = _RULES_FOR.where(or_(_SHARES.c.user_id == bindparam("user_id"),
                                            _SHARES.c.api_key_id == bindparam("api_key_id")))

# INSERT ... ON CONFLICT DO NOTHING RETURNING id, its columns those of the values given; PostgreSQL's or SQLite's.
JOB_INSERT_IF_ABSENT = {
    name: dialect.insert(_JOBS).on_conflict_do_nothing(index_elements=["id"]).returning(_JOBS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
JOB_CREATE = insert(_JOBS)  # values bound at execution: no statement built (and cache-keyed) per job
JOB_FINISH = update(_JOBS).where(_JOBS.c.id == bindparam("finished_id"), _JOBS.c.status == JobStatus.PROCESSING)
JOB_COLUMNS = frozenset(_JOBS.c.keys())  # bound values name no column by themselves: a typo would be dropped
