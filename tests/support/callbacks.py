"""Callbacks as their tests drive them: the stack's settings for a callback receiver on localhost (private CA,
allow-listed, a fast schedule) and the app wired to the dev server with them (fixtures ``cb_settings``,
``cb_stack``), a submission with a callback URL, and waiting for its delivery."""

from __future__ import annotations

import pytest

from tests.conftest import app_and_client
from tests.support.data_api import Tenant, bearer, execute
from tests.support.polling import wait_until

FAST_SCHEDULE = [0, 0.3, 0.3, 0.3, 0.3]


@pytest.fixture
def cb_settings(stack_settings, pki):
    return stack_settings.model_copy(update={
        "callback_allow_cidrs": ["127.0.0.0/8", "::1/128"], "callback_allow_hosts": ["localhost"],
        "callback_ca_bundle": str(pki / "ca.pem"),
        "callback_schedule_seconds": FAST_SCHEDULE, "callback_jitter": 0.0, "callback_timeout_seconds": 5.0})


@pytest.fixture
async def cb_stack(cb_settings, temporal_env):
    async with app_and_client(cb_settings, temporal_env.client) as pair:
        yield pair


async def submit(tenant: Tenant, api, token: str, url: str, endpoint="default/relatorio-mensal",
                 params=None) -> dict:
    r = await execute(api, token, endpoint, params or {"mes": "2026-03"}, callback_url=url)
    assert r.status_code == 202, r.text
    return r.json()


async def callback_done(api, token, polling_url, within=20.0) -> dict:
    async def done():
        job = (await api.get(polling_url, headers=bearer(token))).json()
        return job if job["callback"]["status"] != "pending" else None

    return await wait_until(done, within)


async def received(receiver, n: int) -> bool:
    return len(receiver.requests) >= n
