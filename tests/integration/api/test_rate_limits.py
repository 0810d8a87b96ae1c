"""Rate limits and fairness on execute, on the real stack (the dev server, a query worker, DuckDB, the store):
requests per minute per key and per company with the IETF draft's ``RateLimit-*`` headers, 429 ``RATE_LIMITED``
with ``Retry-After``, per-company overrides, two API processes sharing a limit through the store, and one
company's sync executions in flight bounded while another's run."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from api.app import create_app
from dataapi.db import make_engine, session_scope
from dataapi.identity import service as identity
from dataapi.limits import Override, set_override
from tests.support.data_api import SLOW_SQL, Tenant, bearer, execute, served
from tests.support.errors import error_body
from tests.support.polling import wait_until

POINT = ("default/vendas-por-regiao", {"data_inicio": "2026-01-01"})
SETTLE = 0.4  # longer than a few background syncs (every 0.05 s here)


@pytest.fixture
def stack_settings(stack_settings):
    return stack_settings.model_copy(update={
        "rate_limit_per_key": 3, "rate_limit_per_company": 5, "rate_limit_sync_seconds": 0.05,
        "sync_concurrency_per_company": 1, "sync_queue_seconds": 0.3, "sync_timeout_seconds": 4.0})


@pytest.fixture(autouse=True)
async def clear_of_the_minute():
    """Counts live in one-minute windows: each test runs well inside one."""
    into = time.time() % 60
    if into > 45:
        await asyncio.sleep(60.5 - into)


def quota(r) -> tuple[int, int]:
    reset = int(r.headers["ratelimit-reset"])
    assert 1 <= reset <= 60, r.headers
    return int(r.headers["ratelimit-limit"]), int(r.headers["ratelimit-remaining"])


async def test_a_key_gets_its_requests_per_minute_then_429(tenant, api):
    key = tenant.user()
    token = await tenant.token(user=key)
    answers = [await execute(api, token, *POINT), await execute(api, token, "default/relatorio-mensal",
                                                                {"mes": "2026-03"}),
               await execute(api, token, "default/nao-existe")]
    assert [r.status_code for r in answers] == [200, 202, 404]  # every execute counts, an error too
    assert [quota(r) for r in answers] == [(3, 2), (3, 1), (3, 0)]
    assert answers[0].headers["ratelimit-policy"] == '3;w=60;comment="API key", 5;w=60;comment="company"'

    refused = await execute(api, token, *POINT)
    assert refused.status_code == 429, refused.text
    body = error_body(refused)
    assert body["code"] == "RATE_LIMITED" and "the API key's limit is 3 per minute" in body["message"]
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert quota(refused) == (3, 0)

    other = await execute(api, await tenant.token(), *POINT)  # another key of the company: its own 3
    assert other.status_code == 200 and quota(other) == (5, 1)  # the company's 5 is the tighter now
    poll = await api.get(answers[1].json()["polling_url"], headers=bearer(token))
    assert poll.status_code == 200 and "ratelimit-limit" not in poll.headers  # only execute is limited


async def test_the_company_limit_spans_its_keys(tenant, api):
    tokens = [await tenant.token() for _ in range(3)]
    for token in tokens[:2]:
        for _ in range(2):
            assert (await execute(api, token, *POINT)).status_code == 200
    last = await execute(api, tokens[2], *POINT)
    assert last.status_code == 200 and quota(last) == (5, 0)
    refused = await execute(api, tokens[2], *POINT)
    assert refused.status_code == 429 and "company's limit is 5" in error_body(refused)["message"]
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_company_override(tenant, api):
    with session_scope(tenant.ctx.engine) as s:
        set_override(s, identity.get_company(s, tenant.slug), Override(key_per_minute=0, company_per_minute=0))
    token = await tenant.token()
    first = await execute(api, token, *POINT)  # this process learns the override with its first sync
    assert first.status_code == 200 and quota(first) == (3, 2)
    await asyncio.sleep(SETTLE)
    for _ in range(4):  # no limit any more: no headers
        r = await execute(api, token, *POINT)
        assert r.status_code == 200 and "ratelimit-limit" not in r.headers
    with session_scope(tenant.ctx.engine) as s:
        set_override(s, identity.get_company(s, tenant.slug), Override(key_per_minute=6))
    await asyncio.sleep(SETTLE)
    r = await execute(api, token, *POINT)
    # 6 per key, and the company's default 5 the tighter; requests made under no limit were not counted
    assert r.status_code == 200 and quota(r) == (5, 3)


async def test_two_api_processes_share_a_limit_through_the_store(tenant, api, stack_settings, temporal_env):
    """A second app on the same store (another API process): the company's 5 are shared between them."""
    key = tenant.user()
    tokens = [await tenant.token(user=key)] + [await tenant.token() for _ in range(2)]
    for token in tokens:
        assert (await execute(api, token, *POINT)).status_code == 200
    await asyncio.sleep(SETTLE)
    engine = make_engine(stack_settings.resolved_database_url)
    other_app = create_app(stack_settings, engine, temporal_env.client)  # its queries run on the stack's worker
    try:
        async with served(other_app) as other:
            first = await execute(other, tokens[0], *POINT)  # decided before its first sync: its own count only
            assert first.status_code == 200, first.text
            await asyncio.sleep(SETTLE)
            second = await execute(other, tokens[1], *POINT)
            assert second.status_code == 200 and quota(second) == (5, 0)
            refused = await execute(other, tokens[2], *POINT)
            assert refused.status_code == 429 and "company's limit is 5" in error_body(refused)["message"]
            await asyncio.sleep(SETTLE)
    finally:
        engine.dispose()
    r = await execute(api, tokens[1], *POINT)  # the first process, still syncing, knows the other's two
    assert r.status_code == 429, r.text


async def test_one_company_saturating_its_sync_slots_does_not_block_another(stack, api):
    busy, calm = Tenant(stack, api), Tenant(stack, api)
    busy.endpoint(slug="lento", sql=SLOW_SQL)
    busy_tokens = [await busy.token(), await busy.token()]
    slots = stack.state.ctx.limits.slots
    slow = asyncio.create_task(execute(api, busy_tokens[0], "default/lento"))

    async def holds() -> bool:
        return slots.running(busy.company_id) == 1

    await wait_until(holds, 5, step=0.02)  # the slow call holds the company's one slot

    started = time.monotonic()
    refused = await execute(api, busy_tokens[1], *POINT)
    waited = time.monotonic() - started
    assert refused.status_code == 429, refused.text
    body = error_body(refused)
    assert body["code"] == "RATE_LIMITED" and "in flight (at most 1)" in body["message"]
    assert refused.headers["retry-after"] == "1" and waited >= 0.3
    assert quota(refused) == (3, 2)  # the request was counted before it waited

    other = await execute(api, await calm.token(), *POINT)  # another company runs meanwhile
    assert other.status_code == 200, other.text
    assert not slow.done()
    timed_out = await slow
    assert timed_out.status_code == 408, timed_out.text
    after = await execute(api, busy_tokens[1], *POINT)  # the slot is free again
    assert after.status_code == 200, after.text


async def test_a_call_over_the_bound_waits_for_a_turn(stack, api):
    tenant = Tenant(stack, api)
    token = await tenant.token()
    slots = stack.state.ctx.limits.slots
    slots.wait_seconds = 30  # long enough for a loaded machine: this test is about waiting, not refusing
    seen: list[tuple[int, int]] = []

    async def watch() -> None:
        while True:
            seen.append((slots.running(tenant.company_id), slots.waiting(tenant.company_id)))
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.gather(*(execute(api, token, *POINT) for _ in range(3)))
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert max(running for running, _ in seen) == 1 and max(waiting for _, waiting in seen) >= 1
    assert slots.running(tenant.company_id) == slots.waiting(tenant.company_id) == 0


async def test_the_jobs_api_execute_is_limited_in_its_dialect(org):
    with session_scope(org.ctx.engine) as s:
        set_override(s, identity.require_company(s, org.slug), Override(key_per_minute=1))
    created = await org.submit(params={"a": 1, "b": 2})  # decided with the defaults (3): the first sync is beside
    assert created.status_code == 201, created.text
    assert quota(created) == (3, 2)
    await asyncio.sleep(SETTLE)
    refused = await org.submit(params={"a": 1, "b": 2})
    assert refused.status_code == 429, refused.text
    body = error_body(refused)
    assert list(body) == ["error"] and "API key's limit is 1 per minute" in body["error"]
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"] and quota(refused) == (1, 0)
    assert (await org.finished(created.json()["job_id"])).status_code == 200
