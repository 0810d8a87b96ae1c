"""Human users' passwords (Argon2id, ``argon2-cffi``) and one-time invitations to set one.

A password is checked against its stored hash, or against a dummy hash when the user does not exist, is not human
or has no password yet, so that every refusal costs the same time. Setting a password ends the user's console
sessions (``dataapi.identity.sessions``)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from dataapi.identity.service import AuthFailed, IdentityError, Principal, user_policies, valid_slug
from dataapi.identity.sessions import end_user_sessions
from dataapi.models import Company, User, as_utc, pk, utcnow
from dataapi.statuses import UserKind

MIN_LENGTH, MAX_LENGTH = 10, 1024
INVITATION_TTL = timedelta(days=7)
_HASHER = PasswordHasher()  # Argon2id, the library's RFC 9106 "low memory" profile
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password_rules(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise IdentityError(f"a password must be {MIN_LENGTH} to {MAX_LENGTH} characters")
    if not password.strip():
        raise IdentityError("a password must not be blank")


def set_password(session: Session, user: User, password: str) -> None:
    """Sets a human user's password (an invitation outstanding is used up) and ends their sessions."""
    if user.kind != UserKind.HUMAN:
        raise IdentityError("only human users have passwords; integration users use API keys")
    check_password_rules(password)
    user.password_hash = hash_password(password)
    user.invitation_hash = user.invitation_expires_at = None
    session.add(user)
    end_user_sessions(session, pk(user))
    session.flush()


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def authenticate_password(session: Session, company_slug: str, name: str, password: str) -> Principal:
    """The human principal behind a company, a user name and a password, or ``AuthFailed``."""
    user = company = None
    if valid_slug(company_slug) and 0 < len(name) <= 200 and len(password) <= MAX_LENGTH:
        row = session.exec(select(User, Company).join(Company, Company.id == User.company_id)  # type: ignore[arg-type]
                           .where(Company.slug == company_slug, User.name == name)).first()
        if row is not None:
            user, company = row
    stored = user.password_hash if user is not None and user.kind == UserKind.HUMAN else None
    if not _verify(stored, password[:MAX_LENGTH]) or user is None or company is None or user.disabled:
        raise AuthFailed()
    if _HASHER.check_needs_rehash(user.password_hash or ""):
        user.password_hash = hash_password(password)
        session.add(user)
    return Principal(user=user, company=company, api_key=None, policies=user_policies(session, pk(user)))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invitation(session: Session, user: User, ttl: timedelta = INVITATION_TTL) -> str:
    """A one-time token with which a human user sets their password (only its hash is kept; a new invitation
    replaces the previous one)."""
    if user.kind != UserKind.HUMAN:
        raise IdentityError("only human users can be invited; integration users use API keys")
    token = secrets.token_urlsafe(32)
    user.invitation_hash = _token_hash(token)
    user.invitation_expires_at = utcnow() + ttl
    session.add(user)
    session.flush()
    return token


def invited_user(session: Session, token: str) -> User | None:
    """The user a valid, unexpired invitation token belongs to."""
    if not 20 <= len(token) <= 100:
        return None
    user = session.exec(select(User).where(User.invitation_hash == _token_hash(token))).first()
    if user is None or user.disabled or user.invitation_expires_at is None \
            or as_utc(user.invitation_expires_at) <= utcnow():
        return None
    return user


def accept_invitation(session: Session, token: str, password: str) -> User:
    user = invited_user(session, token)
    if user is None:
        raise IdentityError("this invitation link is invalid or has expired; ask an admin for a new one")
    set_password(session, user, password)
    return user
