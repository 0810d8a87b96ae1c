"""Idempotency keys in the store (migration 0012 and ``dataapi.idempotency.claim``) on SQLite and PostgreSQL:
one live key per company and user, the window, and the migration's round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from dataapi import idempotency
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint
from dataapi.db import alembic_config, make_engine, session_scope, upgrade
from dataapi.identity import service as identity
from dataapi.models import Job, utcnow
from tests.conftest import unique_slug

WINDOW = timedelta(hours=24)


def test_0012_adds_and_removes_the_key_columns(empty_url):
    upgrade(empty_url, "0011")
    engine = make_engine(empty_url)
    try:
        upgrade(empty_url, "0012")
        for table in ("jobs", "repo_jobs"):
            columns = {c["name"] for c in inspect(engine).get_columns(table)}
            assert {"idempotency_key", "request_fingerprint"} <= columns
            unique = {i["name"] for i in inspect(engine).get_indexes(table) if i["unique"]}
            assert f"ix_{table}_idempotency" in unique
        engine.dispose()
        command.downgrade(alembic_config(empty_url), "0011")
        for table in ("jobs", "repo_jobs"):
            assert "idempotency_key" not in {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


@pytest.fixture
def owner(store):
    with session_scope(store) as s:
        company = identity.create_company(s, unique_slug())
        user = identity.create_user(s, company, "erp", ["DataAPIConsumer"])
        endpoint, _ = upsert_endpoint(s, company, parse_definition({"slug": "x", "sql": "SELECT 1 AS x"}, 100, 1000))
        return company.id, company.slug, user.id, endpoint.id


def _add(store, owner, claim, created_at=None):
    company_id, _, user_id, endpoint_id = owner
    with session_scope(store) as s:
        s.add(Job(id=claim.job_id, company_id=company_id, endpoint_id=endpoint_id, mode="async", user_id=user_id,
                  created_at=created_at or utcnow(), **claim.row_fields))


def _claim(store, owner, key, fp):
    company_id, slug, user_id, _ = owner
    with session_scope(store) as s:
        return idempotency.claim(s, Job, company_id, slug, user_id, key, fp, WINDOW)


def test_a_key_names_one_job_for_a_day(store, owner):
    first = _claim(store, owner, "k", "a" * 64)
    assert first.existing is None
    _add(store, owner, first)
    again = _claim(store, owner, "k", "a" * 64)
    assert again.job_id == first.job_id and again.existing is not None
    with pytest.raises(idempotency.KeyReused):
        _claim(store, owner, "k", "b" * 64)
    # A second row with the same live key cannot go in, whatever its id.
    with pytest.raises(IntegrityError):
        _add(store, owner, idempotency.Claim("k", "b" * 64, "f" * 24))


def test_an_expired_key_names_a_new_job(store, owner):
    old = _claim(store, owner, "k", "a" * 64)
    _add(store, owner, old, created_at=utcnow() - WINDOW - timedelta(minutes=1))
    fresh = _claim(store, owner, "k", "b" * 64)  # another request is fine once the window is over
    assert fresh.existing is None and fresh.job_id != old.job_id
    _add(store, owner, fresh)
    with session_scope(store) as s:
        assert s.get(Job, old.job_id).idempotency_key is None


@pytest.mark.parametrize("key", ["", "a b", "é", "x" * 256])
def test_keys_are_visible_ascii(key):
    with pytest.raises(idempotency.InvalidKey):
        idempotency.parse_key(key)
