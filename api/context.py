"""The resources an API process builds once and shares between requests, and the typed way a handler reaches
them: ``context(request)``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from temporalio.client import Client

from dataapi import secrets, temporal
from dataapi.callbacks.secrets import SecretBox
from dataapi.db import make_engine, session_scope
from dataapi.identity.ratelimit import FailureLimiter
from dataapi.identity.service import SecretHasher
from dataapi.identity.tokens import TokenService
from dataapi.limits import ExecuteLimits
from dataapi.settings import Settings
from dataapi.storage.base import ArtifactStore
from dataapi.storage.factory import store_from_settings
from dataapi.sync import SyncLane

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    tokens: TokenService
    hasher: SecretHasher
    limiter: FailureLimiter
    artifacts: ArtifactStore
    box: SecretBox
    limits: ExecuteLimits  # dataapi.limits: execute rate limits and fairness
    sync_lane: SyncLane = field(default_factory=SyncLane)  # dataapi.sync: served by the embedded query worker
    _client: Client | None = None
    _client_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None, client: Client | None = None) -> AppContext:
        key = secrets.secret_key(settings)
        engine = engine or make_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            engine=engine,
            tokens=TokenService(
                secrets.jwt_keyset(settings), settings.jwt_issuer, settings.jwt_audience,
                settings.jwt_leeway_seconds, settings.access_token_ttl_seconds, settings.refresh_token_ttl_seconds,
            ),
            hasher=SecretHasher(key),
            limiter=FailureLimiter(settings.auth_max_failures, settings.auth_failure_window_seconds),
            artifacts=store_from_settings(settings),
            box=SecretBox(key),
            limits=ExecuteLimits(engine, settings),
            sync_lane=SyncLane(enabled=settings.sync_fast_lane),
            _client=client,
        )

    async def temporal(self) -> Client:
        """The process's one Temporal client, connected on first use (the server may start after us)."""
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await temporal.connect(self.settings, lazy=True)
        return self._client

    async def connected_temporal(self) -> Client:
        """The process's client, connected now (raises while Temporal is unreachable). Workers refuse lazy
        clients, and eager start needs the starting client to be the worker's: the connected client replaces
        the lazy one for every later request."""
        async with self._client_lock:
            if self._client is None or self._client.service_client.config.lazy:
                self._client = await temporal.connect(self.settings)
            return self._client

    async def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(session, *args)`` in one transaction of the metadata store, on a worker thread (the store's
        driver blocks): how a handler calls a service."""

        def run() -> T:
            with session_scope(self.engine) as session:
                return fn(session, *args)

        return await run_in_threadpool(run)


def context(request: Request) -> AppContext:
    """The application's ``AppContext``, typed."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx
