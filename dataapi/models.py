"""SQLModel tables of the metadata store. The schema itself is owned by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from dataapi.statuses import DeliveryStatus, ExecutionMode, JobStatus, RepoJobStatus, UserKind


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class _Stored(Protocol):
    @property
    def id(self) -> int | None: ...


def pk(row: _Stored) -> int:
    """The id of a stored row. SQLModel types an autoincrement key ``int | None`` because it is empty until the
    first flush; every row a service hands on has been flushed, so an empty one is a bug."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id yet: it was never flushed")
    return row.id


def _ts(nullable: bool = True, index: bool = False) -> Any:  # a Field: SQLModel types it as Any
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class Company(SQLModel, table=True):
    __tablename__ = "companies"
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=63, unique=True, index=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("company_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(default=UserKind.INTEGRATION, max_length=20)  # a UserKind
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    password_hash: str | None = Field(default=None, max_length=255)  # Argon2id, human users only
    invitation_hash: str | None = Field(default=None, max_length=64)  # SHA-256 of a one-time invitation token
    invitation_expires_at: datetime | None = _ts()


class ConsoleSession(SQLModel, table=True):
    """A human user's console session. ``id`` is the SHA-256 of the cookie's token, never the token."""

    __tablename__ = "console_sessions"
    id: str = Field(max_length=64, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    csrf_token: str = Field(max_length=64)
    address: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))  # the absolute expiry
    revoked_at: datetime | None = _ts()


class UserPolicy(SQLModel, table=True):
    __tablename__ = "user_policies"
    user_id: int = Field(foreign_key="users.id", primary_key=True)
    policy: str = Field(max_length=100, primary_key=True)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(max_length=64, unique=True, index=True)  # public part, e.g. s42_...
    user_id: int = Field(foreign_key="users.id", index=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    secret_hash: str = Field(max_length=128)  # keyed hash (HMAC-SHA256) of the secret; never the secret
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()


class RefreshToken(SQLModel, table=True):
    """One row per issued refresh token (by its jti, never the token). Rotation marks ``used_at``;
    presenting a used token revokes the whole family."""

    __tablename__ = "refresh_tokens"
    jti: str = Field(max_length=64, primary_key=True)
    family_id: str = Field(max_length=64, index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    api_key_id: int | None = Field(default=None, foreign_key="api_keys.id", index=True)
    issued_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class Endpoint(SQLModel, table=True):
    """A visualization endpoint: admin-written SQL published at /api/v1/data-api/{namespace}/{slug}."""

    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("company_id", "namespace", "slug"),)
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    namespace: str = Field(default="default", max_length=63)
    slug: str = Field(max_length=63)
    description: str = Field(default="", max_length=2000)
    sql: str
    parameters: str = "[]"  # JSON list of ParamSpec dicts
    execution_mode: str = Field(default=ExecutionMode.SYNC, max_length=10)  # an ExecutionMode
    max_rows: int = 10_000
    export_max_rows: int | None = None  # async: every row up to this many is stored and pageable (None: max_rows)
    active: bool = True
    # JSON list of {"name", "type"}: the result's columns as validation at save found them (None: not validated)
    columns: str | None = None
    # How long a sync result is answered again from the result cache (dataapi.data_api.cache); 0: never cached
    cache_seconds: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CachedResult(SQLModel, table=True):
    """The result cache's shared tier (``dataapi.data_api.cache``): a key of a sync execution and the stored result
    artifact that answers it, so that every API process shares the hits of one execution."""

    __tablename__ = "result_cache"
    key: str = Field(max_length=64, primary_key=True)  # sha256 hex of company, definition, data version, values
    company_id: int = Field(index=True)
    endpoint_id: int = Field(index=True)
    job_id: str = Field(max_length=64)
    result_key: str = Field(max_length=255)
    executed_at: str = Field(max_length=32)  # the original execution's, as its answer said it
    size_bytes: int
    stored_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class ShareContextRow(SQLModel, table=True):
    """Restricts parameter values for one integration user or one API key (optionally one endpoint)."""

    __tablename__ = "share_contexts"
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    api_key_id: int | None = Field(default=None, foreign_key="api_keys.id", index=True)
    endpoint_id: int | None = Field(default=None, foreign_key="endpoints.id", index=True)
    rules: str = "{}"  # JSON {param: {"pinned": v} | {"allowed": [v, ...]}}
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Job(SQLModel, table=True):
    """The durable record of one execution; its id is the Temporal workflow id."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_idempotency", "company_id", "user_id", "idempotency_key", unique=True),
                      Index("ix_jobs_endpoint_user_created", "endpoint_id", "user_id", "created_at"))
    id: str = Field(max_length=64, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    endpoint_id: int = Field(foreign_key="endpoints.id", index=True)
    mode: str = Field(max_length=10)
    status: str = Field(default=JobStatus.PROCESSING, max_length=20)  # a JobStatus
    parameters: str = "{}"
    callback_url: str | None = Field(default=None, max_length=2048)
    user_id: int | None = Field(default=None, foreign_key="users.id")
    api_key_id: int | None = Field(default=None, foreign_key="api_keys.id")
    result_key: str | None = Field(default=None, max_length=512)
    row_count: int | None = None
    truncated: bool | None = None
    rows_key: str | None = Field(default=None, max_length=512)  # every row stored as Parquet (formats, paging)
    total_row_count: int | None = None  # rows in rows_key
    rows_truncated: bool | None = None  # the query had more rows than rows_key holds (export_max_rows)
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False,
                                                                          index=True))
    completed_at: datetime | None = _ts(index=True)
    expired_at: datetime | None = _ts()  # the result and files were pruned: a tombstone (dataapi/retention.py)
    idempotency_key: str | None = Field(default=None, max_length=255)  # dataapi/idempotency.py
    request_fingerprint: str | None = Field(default=None, max_length=64)


class WebhookSecret(SQLModel, table=True):
    """A company's webhook signing secret, encrypted at rest. The newest signs; a retired one keeps signing
    (second signature) for the grace period after ``retired_at``."""

    __tablename__ = "webhook_secrets"
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    secret_encrypted: str = Field(max_length=512)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    retired_at: datetime | None = _ts()


class CallbackDelivery(SQLModel, table=True):
    """One delivery of a job's result to its callback URL; its id is the ``webhook-id`` of every attempt."""

    __tablename__ = "callback_deliveries"
    id: str = Field(max_length=64, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", index=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    url: str = Field(max_length=2048)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=20)  # a DeliveryStatus
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=300)
    next_attempt_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False,
                                                                          index=True))
    finished_at: datetime | None = _ts(index=True)


class CallbackAttempt(SQLModel, table=True):
    """Every attempt of a delivery, as it happened (the response body is never kept)."""

    __tablename__ = "callback_attempts"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="callback_deliveries.id", index=True)
    attempt: int
    attempted_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    outcome: str = Field(max_length=20)  # an AttemptOutcome
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=300)
    duration_ms: int = 0


class Repository(SQLModel, table=True):
    """Analytics code a company registers to run as jobs (Jobs API). ``code`` is JSON: python files and an
    entry point, or a DuckDB script with output tables and a result query."""

    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("company_id", "repo_id"),)
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    repo_id: str = Field(max_length=64, index=True)  # the public repository_id
    name: str = Field(max_length=200)
    runner: str = Field(max_length=20)  # a Runner
    code: str
    default_params: str = "{}"
    repo_metadata: str = "{}"
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class RepoJob(SQLModel, table=True):
    """One run of a repository; its id (a UUID) is the Temporal workflow id. Owned by the user whose API key
    created it (``user_id``, ``api_key_id``); visible to that user, or to a holder of ``jobs:all_clients``, and
    then only under the same application and client. ``user_id`` is empty for jobs created before ownership
    was recorded: only ``jobs:all_clients`` sees those."""

    __tablename__ = "repo_jobs"
    __table_args__ = (Index("ix_repo_jobs_idempotency", "company_id", "user_id", "idempotency_key", unique=True),)
    id: str = Field(max_length=64, primary_key=True)
    company_id: int = Field(foreign_key="companies.id", index=True)
    repository_id: int = Field(foreign_key="repositories.id", index=True)
    application_id: str = Field(max_length=200)
    client_id: str = Field(max_length=200)
    created_by: str = Field(max_length=200)  # the owner's user name, as the seed shows it
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    api_key_id: int | None = Field(default=None, foreign_key="api_keys.id")
    status: str = Field(default=RepoJobStatus.PROCESSING, max_length=20)  # a RepoJobStatus
    inputs: str = "[]"  # JSON list of input file names
    params: str = "{}"
    has_params: bool = False
    job_metadata: str = "{}"
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False,
                                                                          index=True))
    completed_at: datetime | None = _ts(index=True)
    expired_at: datetime | None = _ts()  # the result and files were pruned: a tombstone (dataapi/retention.py)
    idempotency_key: str | None = Field(default=None, max_length=255)  # dataapi/idempotency.py
    request_fingerprint: str | None = Field(default=None, max_length=64)


class CompanyLimits(SQLModel, table=True):
    """A company's own execute limits (``dataapi/limits.py``); an empty value keeps the setting's default."""

    __tablename__ = "company_limits"
    company_id: int = Field(foreign_key="companies.id", primary_key=True)
    requests_per_minute: int | None = None  # the company's, all keys together; 0: no limit
    key_requests_per_minute: int | None = None  # each API key's; 0: no limit
    sync_concurrency: int | None = None  # sync executions in flight per API process
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class RateCounter(SQLModel, table=True):
    """Execute requests of one scope (``key:<id>``, ``user:<id>``, ``company:<id>``) in one minute, summed over
    the API processes (``dataapi/limits.py``)."""

    __tablename__ = "rate_counters"
    scope: str = Field(max_length=64, primary_key=True)
    minute: int = Field(primary_key=True, index=True)  # unix time // 60
    count: int = 0
