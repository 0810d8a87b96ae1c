"""Engine, sessions and migrations of the metadata store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
log = logging.getLogger("dataapi.db")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            # WAL lets readers run beside the one writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if "poolclass" not in kwargs:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    return create_engine(url, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def rowcount(result: Result[Any]) -> int:
    """The number of rows an UPDATE or DELETE touched. Such a statement's result is a ``CursorResult``;
    SQLModel's ``Session.execute`` is typed as returning the plain ``Result``."""
    return cast(CursorResult[Any], result).rowcount


def unavailable(exc: BaseException) -> bool:
    """The store cannot be reached right now (PostgreSQL down, restarting, failing over, no pooled connection
    free in time), as opposed to a statement that fails: worth a retry, and a 503 rather than a 500."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    state = getattr(exc.orig, "sqlstate", None)  # None: no server answered (refused, reset, timed out)
    return exc.connection_invalidated or (isinstance(exc.orig, psycopg.OperationalError) and
                                          (state is None or state.startswith(("08", "57P"))))


async def while_unavailable(call: Callable[[], Awaitable[T]], within: float,
                            tick: Callable[[], None] | None = None) -> T:
    """``await call()``, called again while the store is unavailable, for up to ``within`` seconds (an activity
    whose work is done waits out a store restart instead of failing, and being run again, for it). ``tick`` runs
    at least once a second while waiting: an activity's heartbeat, so that waiting is not taken for dying."""
    deadline = time.monotonic() + within
    delay = 0.25
    while True:
        try:
            return await call()
        except Exception as e:
            if not unavailable(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("metadata store unavailable (%s); trying again in %.2g s", type(e).__name__, delay)
        if tick is not None:
            tick()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
