"""The Python client under the server's rate limits (real stack): a 429 raises RateLimitedError with its
``Retry-After`` and ``RateLimit-*`` headers, answers carry their quota, and the client's own retry waits what
``Retry-After`` asks before sending again."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from dataapi.client import AsyncClient, RateLimit, RateLimitedError
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.limits import Override, set_override
from tests.support.data_api import SLOW_SQL, Tenant, execute
from tests.support.polling import wait_until

SALES = "default/vendas-por-regiao"


@pytest.fixture
def stack_settings(stack_settings):
    return stack_settings.model_copy(update={
        "rate_limit_per_key": 2, "rate_limit_sync_seconds": 0.05, "sync_concurrency_per_company": 1,
        "sync_queue_seconds": 0.3, "sync_timeout_seconds": 4.0})


@pytest.fixture(autouse=True)
async def clear_of_the_minute():
    """Counts live in one-minute windows: each test runs well inside one."""
    into = time.time() % 60
    if into > 45:
        await asyncio.sleep(60.5 - into)


class Timed(httpx.AsyncBaseTransport):
    """The real ASGI transport, noting when each execute was sent and what it was answered."""

    def __init__(self, app):
        self.inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.executes: list[tuple[float, int, str | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/execute"):
            self.executes.append((sent, response.status_code, response.headers.get("retry-after")))
        return response


def client_of(stack, tenant: Tenant, transport, **kw) -> AsyncClient:
    _, key, secret = tenant.user()
    return AsyncClient("http://testserver", tenant.slug, key, secret, transport=transport, **kw)


async def test_a_429_is_typed_and_not_waited_for_past_max_retry_wait(stack, api):
    tenant = Tenant(stack, api)
    wire = Timed(stack)
    async with client_of(stack, tenant, wire, retries=3, max_retry_wait=1.0) as client:
        first = await client.execute(SALES, data_inicio="2026-01-01")
        second = await client.execute(SALES, data_inicio="2026-01-01")
        with pytest.raises(RateLimitedError) as refused:
            await client.execute(SALES, data_inicio="2026-01-01")
    assert (first.rate_limit.limit, first.rate_limit.remaining) == (2, 1)
    assert (second.rate_limit.limit, second.rate_limit.remaining) == (2, 0)
    error = refused.value
    assert error.status == 429 and error.code == "RATE_LIMITED" and "limit is 2 per minute" in error.message
    assert isinstance(error.rate_limit, RateLimit) and error.rate_limit.remaining == 0
    assert 1 < error.retry_after == error.rate_limit.reset <= 60
    # The window ends in more than max_retry_wait: raised at once, not sent again.
    assert [s for _, s, _ in wire.executes] == [200, 200, 429]


async def test_the_clients_retry_waits_retry_after_until_a_sync_slot_frees(stack, api):
    """The company's one sync slot is held by a slow query; the client's call is refused (429, Retry-After: 1)
    and sent again after each pause until the slot is free."""
    tenant = Tenant(stack, api)
    tenant.endpoint(slug="lento", sql=SLOW_SQL)
    with session_scope(tenant.ctx.engine) as s:
        set_override(s, identity.get_company(s, tenant.slug), Override(key_per_minute=0))
    warm = await execute(api, await tenant.token(), SALES, {"data_inicio": "2026-01-01"})
    assert warm.status_code == 200  # this process learns the override with its first sync
    await asyncio.sleep(0.4)

    slow = asyncio.create_task(execute(api, await tenant.token(), "default/lento"))
    slots = stack.state.ctx.limits.slots

    async def holds() -> bool:
        return slots.running(tenant.company_id) == 1

    await wait_until(holds, 5, step=0.02)
    wire = Timed(stack)
    async with client_of(stack, tenant, wire, retries=8, max_retry_wait=2.0) as client:
        result = await client.execute(SALES, data_inicio="2026-01-01")
    assert (await slow).status_code == 408
    statuses = [s for _, s, _ in wire.executes]
    assert result.row_count == 5 and statuses[-1] == 200 and set(statuses[:-1]) == {429}, statuses
    for (sent, status, retry_after), (again, _, _) in zip(wire.executes, wire.executes[1:], strict=False):
        assert status == 429 and retry_after == "1" and again - sent >= 0.3 + 1.0  # the queue wait, then 1 s
