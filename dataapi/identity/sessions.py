"""Console sessions of human users: a row in the metadata store per login, found by the SHA-256 of the cookie's
random token (the token itself is never stored).

A session ends at logout, after ``idle`` seconds without a request, ``absolute`` seconds after login, when its
user is disabled or their password changes (``end_user_sessions``). Each session has its own CSRF token, which
every form of the console carries back."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col

from dataapi.identity.policies import actions_for
from dataapi.identity.service import Principal, user_policies
from dataapi.models import Company, ConsoleSession, User, as_utc, pk, utcnow
from dataapi.statuses import UserKind

TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class Visitor:
    """Who a live session belongs to, as the console's handlers see it. It serves as the data services' caller
    (``company_id``, ``company_slug``, ``user_id``, ``api_key_id``)."""

    session_id: str
    csrf_token: str
    user_id: int
    user_name: str
    company_id: int
    company_slug: str
    company_name: str
    policies: tuple[str, ...]
    api_key_id: None = None

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(actions_for(self.policies))

    def may(self, action: str) -> bool:
        return action in self.actions

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token, token or "")


def _id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, principal: Principal, address: str, absolute_seconds: int) -> str:
    """A new session for a human principal; returns the cookie's token."""
    if principal.user.kind != UserKind.HUMAN:
        raise ValueError("console sessions are for human users")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(ConsoleSession(id=_id(token), user_id=pk(principal.user), company_id=pk(principal.company),
                               csrf_token=secrets.token_urlsafe(32), address=address[:64], created_at=now,
                               last_seen_at=now, expires_at=now + timedelta(seconds=absolute_seconds)))
    session.flush()
    return token


def find_session(session: Session, token: str, idle_seconds: int) -> Visitor | None:
    """The visitor behind a cookie's token while its session is live (touched), else None."""
    if not token or len(token) > 100:
        return None
    row = session.get(ConsoleSession, _id(token))
    now = utcnow()
    if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= now \
            or as_utc(row.last_seen_at) + timedelta(seconds=idle_seconds) <= now:
        return None
    user, company = session.get(User, row.user_id), session.get(Company, row.company_id)
    if user is None or company is None or user.disabled or user.kind != UserKind.HUMAN:
        return None
    if now - as_utc(row.last_seen_at) >= TOUCH_EVERY:
        row.last_seen_at = now
        session.add(row)
    return Visitor(session_id=row.id, csrf_token=row.csrf_token, user_id=pk(user), user_name=user.name,
                   company_id=pk(company), company_slug=company.slug, company_name=company.name,
                   policies=tuple(user_policies(session, pk(user))))


def end_session(session: Session, token: str) -> None:
    session.execute(update(ConsoleSession).where(col(ConsoleSession.id) == _id(token),
                                                 col(ConsoleSession.revoked_at).is_(None))
                    .values(revoked_at=utcnow()))


def end_user_sessions(session: Session, user_id: int) -> None:
    """Ends every live session of a user (disabled, password changed)."""
    session.execute(update(ConsoleSession).where(col(ConsoleSession.user_id) == user_id,
                                                 col(ConsoleSession.revoked_at).is_(None))
                    .values(revoked_at=utcnow()))


def purge_ended_sessions(session: Session, older_than: timedelta = timedelta(days=1)) -> None:
    """Deletes the rows of sessions past their absolute expiry by more than ``older_than`` (each login calls it)."""
    session.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < utcnow() - older_than))

