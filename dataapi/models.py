"""SQLModel tables of the metadata store. The schema itself is owned by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(nullable: bool = True, index: bool = False):
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
    kind: str = Field(default="integration", max_length=20)  # integration | human
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


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
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
