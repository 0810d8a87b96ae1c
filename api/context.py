"""The resources an API process builds once in ``lifespan`` and shares between requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import Engine
from temporalio.client import Client

from dataapi import secrets, temporal
from dataapi.artifacts import ArtifactStore, store_from_settings
from dataapi.callbacks import SecretBox
from dataapi.db import make_engine
from dataapi.identity import SecretHasher
from dataapi.ratelimit import FailureLimiter
from dataapi.settings import Settings
from dataapi.tokens import TokenService


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    tokens: TokenService
    hasher: SecretHasher
    limiter: FailureLimiter
    artifacts: ArtifactStore
    box: SecretBox
    _client: Client | None = None
    _client_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None, client: Client | None = None) -> AppContext:
        key = secrets.secret_key(settings)
        return cls(
            settings=settings,
            engine=engine or make_engine(settings.resolved_database_url),
            tokens=TokenService(
                secrets.jwt_keyset(settings), settings.jwt_issuer, settings.jwt_audience,
                settings.jwt_leeway_seconds, settings.access_token_ttl_seconds, settings.refresh_token_ttl_seconds,
            ),
            hasher=SecretHasher(key),
            limiter=FailureLimiter(settings.auth_max_failures, settings.auth_failure_window_seconds),
            artifacts=store_from_settings(settings),
            box=SecretBox(key),
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
