"""The identity store on SQLite and PostgreSQL: companies, users, API keys, and refresh rotation under
concurrency."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from dataapi import secrets
from dataapi.db import session_scope
from dataapi.errors import InvalidDefinition, NotFound
from dataapi.identity import service as identity
from dataapi.identity.tokens import TokenService
from dataapi.models import ApiKey, RefreshToken
from tests.conftest import unique_slug


@pytest.fixture
def hasher() -> identity.SecretHasher:
    return identity.SecretHasher(b"k" * 48)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(secrets.new_keyset(), "dataapi", "dataapi", 5, 600, 604_800)


def as_utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def new_key(store, hasher, policies=("DataAPIConsumer",)):
    slug = unique_slug()
    with session_scope(store) as s:
        company = identity.create_company(s, slug)
        user = identity.create_user(s, company, "integration", list(policies))
        key, secret = identity.create_api_key(s, hasher, company, user)
    return slug, key, secret


# --- companies -----------------------------------------------------------------------------------------

def test_company_is_created_once(store):
    slug = unique_slug()
    with session_scope(store) as s:
        company = identity.create_company(s, slug, "Acme Ltd")
        assert company.id is not None
    with session_scope(store) as s:
        assert identity.require_company(s, slug).name == "Acme Ltd"
        with pytest.raises(identity.IdentityError, match="already exists"):
            identity.create_company(s, slug)
    with session_scope(store) as s:
        assert identity.get_company(s, unique_slug()) is None
        with pytest.raises(identity.IdentityError):
            identity.require_company(s, unique_slug())


@pytest.mark.parametrize("slug", ["Acme", "acme_co", "-acme", "acme-", "ac--me", "", "acme co", "açme", "a" * 64,
                                  "acme\n"])
def test_company_slug_must_be_kebab_case(store, slug):
    with session_scope(store) as s, pytest.raises(identity.IdentityError, match="kebab-case"):
        identity.create_company(s, slug)


def test_company_name_fits_its_column(store):
    with session_scope(store) as s, pytest.raises(identity.IdentityError, match="200"):
        identity.create_company(s, unique_slug(), "x" * 201)
    with session_scope(store) as s:
        assert identity.create_company(s, unique_slug(), "x" * 200).name == "x" * 200


@pytest.mark.parametrize("slug", ["a", "acme", "acme-co-2", "a" * 63, "42"])
def test_valid_slugs(slug):
    assert identity.valid_slug(slug)


# --- users ---------------------------------------------------------------------------------------------

def test_user_names_are_unique_within_a_company(store):
    with session_scope(store) as s:
        first, second = identity.create_company(s, unique_slug()), identity.create_company(s, unique_slug())
        user = identity.create_user(s, first, "reporting", ["DataAPIConsumer", "VisualizationViewer",
                                                            "DataAPIConsumer"])
        with pytest.raises(identity.IdentityError, match="already exists"):
            identity.create_user(s, first, "reporting", ["DataAPIConsumer"])
        twin = identity.create_user(s, second, "reporting", ["CompanyAdmin"], kind="human")
        assert twin.id != user.id
        assert identity.user_policies(s, user.id) == ["DataAPIConsumer", "VisualizationViewer"]
        assert identity.get_user(s, second, "reporting").kind == "human"


@pytest.mark.parametrize("name, policies, kind", [
    ("u", ["Superuser"], "integration"), ("u", ["DataAPIConsumer", "dataapiconsumer"], "integration"),
    ("u", ["DataAPIConsumer"], "robot"), (" ", ["DataAPIConsumer"], "integration"),
    ("x" * 201, ["DataAPIConsumer"], "integration"),
])
def test_invalid_users_are_refused(store, name, policies, kind):
    with session_scope(store) as s:
        company = identity.create_company(s, unique_slug())
        with pytest.raises(InvalidDefinition):  # IdentityError is one; so is an unknown policy
            identity.create_user(s, company, name, policies, kind=kind)
        assert identity.get_user(s, company, name) is None


# --- API keys ------------------------------------------------------------------------------------------

def test_api_key_is_stored_as_a_keyed_hash(store, hasher):
    slug, key, secret = new_key(store, hasher)
    assert key.key_id.startswith("s42_") and identity.KEY_ID_RE.match(key.key_id)
    assert not identity.KEY_ID_RE.match(key.key_id + "\n")
    assert len(secret) >= 32
    with session_scope(store) as s:
        stored = s.get(ApiKey, key.id)
        assert stored.secret_hash != secret and secret not in stored.secret_hash
        assert stored.secret_hash == hasher.hash(key.key_id, secret)
        assert stored.secret_hash != identity.SecretHasher(b"other").hash(key.key_id, secret)
        principal = identity.authenticate_api_key(s, hasher, slug, key.key_id, secret)
        assert principal.api_key.id == key.id and principal.company.slug == slug
        assert principal.actions == ["data_api:execute", "data_api:get_job"]


def test_api_keys_are_for_integration_users(store, hasher):
    with session_scope(store) as s:
        company = identity.create_company(s, unique_slug())
        human = identity.create_user(s, company, "alice", ["CompanyAdmin"], kind="human")
        with pytest.raises(identity.IdentityError):
            identity.create_api_key(s, hasher, company, human)


def test_authentication_refuses_every_wrong_part(store, hasher):
    slug, key, secret = new_key(store, hasher)
    other_slug, other_key, other_secret = new_key(store, hasher)
    wrong = [
        (slug, key.key_id, other_secret), (slug, key.key_id, secret + "x"), (slug, key.key_id, ""),
        (other_slug, key.key_id, secret), (unique_slug(), key.key_id, secret), (slug, other_key.key_id, secret),
        (slug, "s42_" + "Z" * 20, secret), ("NOT A SLUG", key.key_id, secret), (slug, key.key_id.lower(), secret),
    ]
    with session_scope(store) as s:
        for args in wrong:
            with pytest.raises(identity.AuthFailed):
                identity.authenticate_api_key(s, hasher, *args)
        with pytest.raises(identity.AuthFailed):
            identity.authenticate_api_key(s, identity.SecretHasher(b"other"), slug, key.key_id, secret)
        assert identity.authenticate_api_key(s, hasher, slug, key.key_id, secret).company.slug == slug


def test_revoked_key_and_disabled_user_are_refused(store, hasher):
    slug, key, secret = new_key(store, hasher)
    with session_scope(store) as s:
        revoked = identity.revoke_api_key(s, key.key_id)
        first_revocation = revoked.revoked_at
        assert first_revocation is not None
    with session_scope(store) as s:
        assert as_utc(identity.revoke_api_key(s, key.key_id).revoked_at) == first_revocation  # idempotent
        with pytest.raises(identity.AuthFailed):
            identity.authenticate_api_key(s, hasher, slug, key.key_id, secret)
        with pytest.raises(NotFound):
            identity.revoke_api_key(s, "s42_" + "Q" * 20)

    slug, key, secret = new_key(store, hasher)
    with session_scope(store) as s:
        with pytest.raises(NotFound):  # not this company's key
            identity.revoke_api_key(s, key.key_id, company_id=identity.create_company(s, unique_slug()).id)
        user = identity.authenticate_api_key(s, hasher, slug, key.key_id, secret).user
        identity.set_user_disabled(s, user, True)
    with session_scope(store) as s, pytest.raises(identity.AuthFailed):
        identity.authenticate_api_key(s, hasher, slug, key.key_id, secret)
    with session_scope(store) as s:
        identity.set_user_disabled(s, identity.get_user(s, identity.require_company(s, slug), "integration"), False)
    with session_scope(store) as s:
        assert identity.authenticate_api_key(s, hasher, slug, key.key_id, secret).user.name == "integration"


def test_login_updates_last_used_at(store, hasher):
    slug, key, secret = new_key(store, hasher)
    assert key.last_used_at is None
    before = datetime.now(UTC)
    with session_scope(store) as s:
        identity.authenticate_api_key(s, hasher, slug, key.key_id, secret)
    with session_scope(store) as s:
        used = as_utc(s.get(ApiKey, key.id).last_used_at)
    assert before <= used <= datetime.now(UTC)
    with session_scope(store) as s, pytest.raises(identity.AuthFailed):
        identity.authenticate_api_key(s, hasher, slug, key.key_id, "wrong")
    with session_scope(store) as s:
        assert as_utc(s.get(ApiKey, key.id).last_used_at) == used  # a refused attempt is no use


# --- refresh rotation ----------------------------------------------------------------------------------

def login(store, hasher, tokens, slug, key, secret) -> dict:
    with session_scope(store) as s:
        principal = identity.authenticate_api_key(s, hasher, slug, key.key_id, secret)
        return identity.issue_pair(s, tokens, principal)


def test_refresh_rotation_and_reuse(store, hasher, tokens):
    slug, key, secret = new_key(store, hasher)
    pair = login(store, hasher, tokens, slug, key, secret)
    first = tokens.verify(pair["refresh_token"], "refresh")
    with session_scope(store) as s:
        new = identity.rotate_refresh(s, tokens, first)
    second = tokens.verify(new["refresh_token"], "refresh")
    assert second.family == first.family and second.jti != first.jti
    with session_scope(store) as s:
        assert s.get(RefreshToken, first.jti).used_at is not None
        assert s.get(RefreshToken, second.jti).used_at is None

    with session_scope(store) as s, pytest.raises(identity.RefreshReused):
        identity.rotate_refresh(s, tokens, first)
    with session_scope(store) as s:  # the revocation outlived the refusal
        assert s.get(RefreshToken, second.jti).revoked_at is not None
    with session_scope(store) as s, pytest.raises(identity.AuthFailed):
        identity.rotate_refresh(s, tokens, second)


def test_expired_refresh_token_is_refused_and_purged(store, hasher, tokens):
    slug, key, secret = new_key(store, hasher)
    short = TokenService(secrets.new_keyset(), "dataapi", "dataapi", 0, 600, 1)
    with session_scope(store) as s:
        principal = identity.authenticate_api_key(s, hasher, slug, key.key_id, secret)
        pair = identity.issue_pair(s, short, principal)
    claims = short.verify(pair["refresh_token"], "refresh")
    time.sleep(1.1)
    with session_scope(store) as s, pytest.raises(identity.AuthFailed):
        identity.rotate_refresh(s, short, claims)
    with session_scope(store) as s:
        assert s.get(RefreshToken, claims.jti).used_at is None
        identity.purge_expired_refresh_tokens(s, older_than=timedelta(0))
    with session_scope(store) as s:
        assert s.get(RefreshToken, claims.jti) is None


def test_concurrent_rotations_of_one_token_cannot_both_succeed(store, hasher, tokens):
    """Threads with their own sessions rotate the same refresh token at once: exactly one wins."""
    slug, key, secret = new_key(store, hasher)
    for _ in range(5):
        claims = tokens.verify(login(store, hasher, tokens, slug, key, secret)["refresh_token"], "refresh")
        barrier = threading.Barrier(4)
        outcomes: list = []

        def rotate(claims=claims, barrier=barrier, outcomes=outcomes):
            barrier.wait()
            try:
                with session_scope(store) as s:
                    outcomes.append(identity.rotate_refresh(s, tokens, claims)["refresh_token"])
            except identity.AuthFailed as e:
                outcomes.append(e)

        threads = [threading.Thread(target=rotate) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [o for o in outcomes if isinstance(o, str)]
        assert len(outcomes) == 4 and len(winners) == 1, outcomes
        with session_scope(store) as s:
            rows = s.exec(select(RefreshToken).where(RefreshToken.family_id == claims.family)).all()
        assert len(rows) == 2  # the presented token and the one winner's successor
