"""Companies, users, API keys, logins and refresh-token families: the rules and every query of the identity
domain. The Admin API, the Auth API, the Jobs API's key check and the CLI all call these functions."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from dataapi.db import rowcount
from dataapi.errors import DomainError, InvalidDefinition, NotFound, RateLimited, Unauthorized
from dataapi.identity.policies import actions_for, check_policies
from dataapi.identity.ratelimit import FailureLimiter
from dataapi.identity.tokens import Claims, TokenService
from dataapi.models import ApiKey, Company, RefreshToken, User, UserPolicy, pk, utcnow
from dataapi.statuses import UserKind

# \Z, not $: "$" also matches before a trailing newline, which would let "acme\n" through
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")
KEY_PREFIX = "s42_"
KEY_ID_RE = re.compile(r"^s42_[A-Za-z0-9]{20}\Z")
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class IdentityError(InvalidDefinition):
    """A rule of the identity domain was broken (bad slug, unknown company, duplicate name...)."""


class NameTaken(IdentityError):
    """The name is taken already (a conflict with what exists, not a malformed request)."""

    status, code = 409, "CONFLICT"


class AuthFailed(Exception):
    """Credentials or a refresh token were refused. One message for every cause, on purpose: the caller turns
    it into its answer with ``refusal``."""


def valid_slug(slug: str) -> bool:
    return 0 < len(slug) <= 63 and bool(SLUG_RE.match(slug))


class SecretHasher:
    """Keyed hash (HMAC-SHA256) of API key secrets, compared in constant time."""

    def __init__(self, key: bytes):
        self._key = key

    def hash(self, key_id: str, secret: str) -> str:
        return hmac.new(self._key, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()

    def matches(self, key_id: str, secret: str, stored: str) -> bool:
        return hmac.compare_digest(self.hash(key_id, secret), stored)


@dataclass(frozen=True)
class Principal:
    user: User
    company: Company
    api_key: ApiKey | None
    policies: list[str]

    @property
    def actions(self) -> list[str]:
        return actions_for(self.policies)

    def describe(self) -> dict:
        return {
            "id": self.user.id, "name": self.user.name, "kind": self.user.kind,
            "company_slug": self.company.slug, "api_key": self.api_key.key_id if self.api_key else None,
            "policies": self.policies, "actions": self.actions,
        }


# --- companies and users -------------------------------------------------------------------------------

def create_company(session: Session, slug: str, name: str | None = None) -> Company:
    if not valid_slug(slug):
        raise IdentityError(f"company slug {slug!r} must be kebab-case: lowercase letters, digits and '-'")
    if name and len(name) > 200:
        raise IdentityError("company name must be at most 200 characters")
    if session.exec(select(Company).where(Company.slug == slug)).first():
        raise IdentityError(f"company {slug!r} already exists")
    company = Company(slug=slug, name=name or slug)
    session.add(company)
    session.flush()
    return company


def get_company(session: Session, slug: str) -> Company | None:
    return session.exec(select(Company).where(Company.slug == slug)).first()


def require_company(session: Session, slug: str) -> Company:
    company = get_company(session, slug)
    if company is None:
        raise IdentityError(f"company {slug!r} does not exist")
    return company


def create_user(session: Session, company: Company, name: str, policies: list[str],
                kind: str = UserKind.INTEGRATION) -> User:
    check_policies(policies)
    if kind not in tuple(UserKind):
        raise IdentityError("user kind must be 'integration' or 'human'")
    if not name.strip() or len(name) > 200:
        raise IdentityError("user name must be 1 to 200 characters")
    if session.exec(select(User).where(User.company_id == company.id, User.name == name)).first():
        raise NameTaken(f"user {name!r} already exists in {company.slug!r}")
    user = User(company_id=pk(company), name=name, kind=kind)
    session.add(user)
    session.flush()
    for p in dict.fromkeys(policies):
        session.add(UserPolicy(user_id=pk(user), policy=p))
    session.flush()
    return user


def get_user(session: Session, company: Company, name: str) -> User | None:
    return session.exec(select(User).where(User.company_id == company.id, User.name == name)).first()


def require_user(session: Session, company: Company, name: str) -> User:
    user = get_user(session, company, name)
    if user is None:
        raise NotFound("User not found")
    return user


def list_users(session: Session, company: Company) -> list[User]:
    return list(session.exec(select(User).where(User.company_id == company.id).order_by(col(User.id))).all())


def describe_user(session: Session, user: User) -> dict:
    return {"id": user.id, "name": user.name, "kind": user.kind, "disabled": user.disabled,
            "policies": user_policies(session, pk(user))}


def user_policies(session: Session, user_id: int) -> list[str]:
    return sorted(session.exec(select(UserPolicy.policy).where(UserPolicy.user_id == user_id)).all())


def grant_policies(session: Session, user: User, policies: list[str]) -> None:
    """Adds the policies the user does not hold yet."""
    check_policies(policies)
    for p in set(policies) - set(user_policies(session, pk(user))):
        session.add(UserPolicy(user_id=pk(user), policy=p))
    session.flush()


def set_user_disabled(session: Session, user: User, disabled: bool) -> None:
    user.disabled = disabled
    session.add(user)
    session.flush()


# --- API keys ------------------------------------------------------------------------------------------

def create_api_key(session: Session, hasher: SecretHasher, company: Company, user: User) -> tuple[ApiKey, str]:
    """A new key for an integration user. The secret is returned once and only its keyed hash is kept."""
    if user.kind != UserKind.INTEGRATION:
        raise IdentityError("API keys are for integration users")
    key_id = KEY_PREFIX + "".join(secrets.choice(_ALNUM) for _ in range(20))
    secret = secrets.token_urlsafe(32)
    key = ApiKey(key_id=key_id, user_id=pk(user), company_id=pk(company), secret_hash=hasher.hash(key_id, secret))
    session.add(key)
    session.flush()
    return key, secret


def issue_api_key(session: Session, hasher: SecretHasher, company: Company, user_name: str) -> dict:
    """A new key for the named user of ``company``, as shown once to whoever asked for it."""
    key, secret = create_api_key(session, hasher, company, require_user(session, company, user_name))
    return {"company_slug": company.slug, "api_key": key.key_id, "api_secret": secret}


def revoke_api_key(session: Session, key_id: str, company_id: int | None = None) -> ApiKey:
    query = select(ApiKey).where(ApiKey.key_id == key_id)
    if company_id is not None:
        query = query.where(ApiKey.company_id == company_id)
    key = session.exec(query).first()
    if key is None:
        raise NotFound("API key not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        session.flush()
    return key


_DUMMY_HASH = "0" * 64


def authenticate_api_key(session: Session, hasher: SecretHasher, company_slug: str, key_id: str,
                         secret: str) -> Principal:
    """The principal behind a key and secret, or AuthFailed. The secret is always hashed and compared,
    so that an unknown company or key costs the same time as a wrong secret."""
    key = None
    if valid_slug(company_slug) and KEY_ID_RE.match(key_id):
        key = session.exec(
            select(ApiKey).join(Company, col(Company.id) == ApiKey.company_id)
            .where(ApiKey.key_id == key_id, Company.slug == company_slug)
        ).first()
    ok = hasher.matches(key_id, secret, key.secret_hash if key else _DUMMY_HASH)
    if not ok or key is None or key.revoked_at is not None:
        raise AuthFailed()
    principal = _principal(session, key.user_id, key)
    key.last_used_at = utcnow()
    session.add(key)
    return principal


def refusal(limiter: FailureLimiter, address: str, key_id: str, message: str,
            headers: dict[str, str] | None = None) -> DomainError:
    """The answer to a refused key (``AuthFailed``): 429 once the (key, address) pair or the address has used up
    its budget of failures, else 401 (and the failure counted)."""
    if (wait := limiter.login_failed(address, key_id)) is not None:
        return RateLimited(wait)
    return Unauthorized(message, headers=headers)


def _principal(session: Session, user_id: int, key: ApiKey | None) -> Principal:
    user = session.get(User, user_id)
    if user is None or user.disabled:
        raise AuthFailed()
    company = session.get(Company, user.company_id)
    if company is None:  # a foreign key: only a store edited by hand gets here
        raise AuthFailed()
    return Principal(user=user, company=company, api_key=key, policies=user_policies(session, pk(user)))


def login(session: Session, hasher: SecretHasher, tokens: TokenService, company_slug: str, key_id: str,
          secret: str) -> dict:
    """A token pair for a key and its secret (``AuthFailed`` when refused)."""
    return issue_pair(session, tokens, authenticate_api_key(session, hasher, company_slug, key_id, secret))


# --- token pairs and refresh rotation --------------------------------------------------------------------

def issue_pair(session: Session, tokens: TokenService, principal: Principal, family: str | None = None) -> dict:
    family = family or uuid.uuid4().hex
    user_id, company_id = pk(principal.user), pk(principal.company)
    api_key_id = pk(principal.api_key) if principal.api_key else None
    slug = principal.company.slug
    access, _ = tokens.issue("access", user_id=user_id, company_id=company_id, company_slug=slug,
                             api_key_id=api_key_id, actions=principal.actions)
    refresh, rc = tokens.issue("refresh", user_id=user_id, company_id=company_id, company_slug=slug,
                               api_key_id=api_key_id, family=family)
    session.add(RefreshToken(jti=rc.jti, family_id=family, user_id=user_id,
                             api_key_id=api_key_id, expires_at=datetime.fromtimestamp(rc.expires_at, UTC)))
    session.flush()
    return {
        "access_token": access, "refresh_token": refresh,
        "access_token_expires_in": tokens.access_ttl, "refresh_token_expires_in": tokens.refresh_ttl,
        "user": principal.describe(),
    }


class RefreshReused(AuthFailed):
    """An already-used refresh token was presented: its whole family has been revoked."""


def rotate_refresh(session: Session, tokens: TokenService, claims: Claims) -> dict:
    """Exchanges a refresh token for a new pair. The conditional update makes rotation atomic: of two
    concurrent refreshes of one token, exactly one marks it used; the other is treated as reuse."""
    now = utcnow()
    marked = rowcount(session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.jti) == claims.jti, col(RefreshToken.used_at).is_(None),
               col(RefreshToken.revoked_at).is_(None), col(RefreshToken.expires_at) > now)
        .values(used_at=now)
    ))
    row = session.get(RefreshToken, claims.jti)
    if marked != 1:
        if row is not None and row.used_at is not None:
            revoke_family(session, row.family_id)
            session.commit()  # the revocation must outlive the refusal
            raise RefreshReused()
        raise AuthFailed()
    if row is None or row.user_id != claims.user_id:
        raise AuthFailed()
    key = session.get(ApiKey, row.api_key_id) if row.api_key_id is not None else None
    if key is not None and key.revoked_at is not None:
        raise AuthFailed()
    return issue_pair(session, tokens, _principal(session, row.user_id, key), family=row.family_id)


def revoke_family(session: Session, family_id: str) -> None:
    session.execute(
        update(RefreshToken).where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


def purge_expired_refresh_tokens(session: Session, older_than: timedelta = timedelta(days=1)) -> int:
    return rowcount(session.execute(delete(RefreshToken).where(col(RefreshToken.expires_at) < utcnow() - older_than)))
