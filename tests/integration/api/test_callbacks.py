"""Callbacks end to end: a real HTTPS receiver on localhost (private CA, reached through the allow-lists), the
real dev server and workers; the full multi-day schedule under the time-skipping test server."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlmodel import func, select
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from dataapi.callbacks import deliveries
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.db import session_scope
from dataapi.messages import AttemptInput, AttemptOutput, CallbackInput
from dataapi.models import Job
from tests.support.callbacks import FAST_SCHEDULE, callback_done, received, submit
from tests.support.data_api import Tenant, bearer, execute, wait_job
from tests.support.polling import wait_until
from tests.support.receiver import Reply
from worker import build_callback_worker, build_query_worker
from workflows.callback import CallbackWorkflow


@pytest.fixture
async def workers(cb_settings, temporal_env):
    async with build_query_worker(temporal_env.client, cb_settings), \
            build_callback_worker(temporal_env.client, cb_settings):
        yield


def _secret(tenant: Tenant) -> str:
    with session_scope(tenant.ctx.engine) as s:
        return webhook_secrets.current_secret(s, tenant.ctx.box, tenant.company_id)


async def test_signed_callback_carries_the_job_as_get_job_shows_it(cb_stack, workers, receiver):
    app, api = cb_stack
    tenant = Tenant(app, api)
    token = await tenant.token()
    accepted = await submit(tenant, api, token, receiver.url("localhost"))
    job = await callback_done(api, token, accepted["polling_url"])
    assert job["callback"]["status"] == "delivered" and job["callback"]["attempts"] == 1
    assert job["callback"]["last_http_status"] == 200 and job["callback"]["next_attempt_at"] is None

    [req] = receiver.requests
    headers = {k: v for k, v in req.headers.items() if k.startswith("webhook-")}
    Webhook(_secret(tenant)).verify(req.body, headers)  # raises when the signature is wrong
    assert headers["webhook-id"] == job["callback"]["webhook_id"]
    assert req.headers["host"] == f"localhost:{receiver.port}" and receiver.sni == ["localhost"]
    sent = orjson.loads(req.body)
    assert sent == {k: v for k, v in job.items() if k != "callback"}
    assert sent["status"] == "completed" and sent["result"]["row_count"] > 0


async def test_retries_share_one_webhook_id_until_success(cb_stack, workers, receiver):
    app, api = cb_stack
    tenant = Tenant(app, api)
    token = await tenant.token()
    receiver.replies.extend([Reply(500), Reply(500), Reply(500), Reply(200)])
    accepted = await submit(tenant, api, token, receiver.url("localhost"))
    job = await wait_job(api, token, accepted["polling_url"])
    assert job["status"] == "completed"  # the job's fate never waits on its callback
    job = await callback_done(api, token, accepted["polling_url"])
    assert job["callback"]["status"] == "delivered" and job["callback"]["attempts"] == 4
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 4 and ids == {job["callback"]["webhook_id"]}
    with session_scope(tenant.ctx.engine) as s:
        log = deliveries.attempts_of(s, job["callback"]["webhook_id"])
    assert [(a.attempt, a.outcome, a.status_code) for a in log] == [
        (1, "retry", 500), (2, "retry", 500), (3, "retry", 500), (4, "delivered", 200)]


async def test_gone_stops_and_redirects_are_not_followed(cb_stack, workers, receiver):
    app, api = cb_stack
    tenant = Tenant(app, api)
    token = await tenant.token()
    receiver.replies.append(Reply(410))
    polling_url = (await submit(tenant, api, token, receiver.url("localhost")))["polling_url"]
    job = await callback_done(api, token, polling_url)
    assert job["callback"]["status"] == "failed" and job["callback"]["attempts"] == 1
    assert job["callback"]["last_http_status"] == 410 and len(receiver.requests) == 1

    receiver.requests.clear()
    elsewhere = receiver.url("localhost", "/elsewhere")
    receiver.replies.extend([Reply(302, headers={"location": elsewhere}), Reply(200)])
    polling_url = (await submit(tenant, api, token, receiver.url("localhost")))["polling_url"]
    job = await callback_done(api, token, polling_url)
    assert job["callback"]["status"] == "delivered" and job["callback"]["attempts"] == 2
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]


async def test_every_attempt_failing_ends_failed_and_the_job_stays_completed(cb_stack, workers, receiver):
    app, api = cb_stack
    tenant = Tenant(app, api)
    token = await tenant.token()
    receiver.replies.extend([Reply(503)] * len(FAST_SCHEDULE))
    accepted = await submit(tenant, api, token, receiver.url("localhost"))
    job = await callback_done(api, token, accepted["polling_url"])
    assert job["status"] == "completed" and job["callback"]["status"] == "failed"
    assert job["callback"]["attempts"] == len(FAST_SCHEDULE) == len(receiver.requests)


async def test_failed_job_is_called_back_with_its_error(cb_stack, workers, receiver):
    app, api = cb_stack
    tenant = Tenant(app, api)
    token = await tenant.token()
    tenant.endpoint(slug="quebra", execution_mode="async", sql="SELECT CAST($v AS INTEGER) AS n",
                    parameters=[{"name": "v", "type": "string"}])
    accepted = await submit(tenant, api, token, receiver.url("localhost"), "default/quebra", {"v": "x"})
    job = await callback_done(api, token, accepted["polling_url"])
    sent = orjson.loads(receiver.requests[0].body)
    assert sent["status"] == job["status"] == "failed" and sent["error"] == job["error"] and sent["result"] is None


async def test_rotation_sends_both_signatures_and_redelivery_gets_a_new_id(cb_stack, workers, receiver):
    app, api = cb_stack
    tenant = Tenant(app, api)
    token = await tenant.token()
    admin = await tenant.token(policies=("CompanyAdmin",))
    old = (await api.get("/api/v1/admin/webhook-secret", headers=bearer(admin))).json()["secret"]
    rotated = await api.post("/api/v1/admin/webhook-secret/rotate", headers=bearer(admin))
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert old.startswith("whsec_") and new.startswith("whsec_") and new != old
    assert rotated.json()["previous_secrets_signing"] == 1

    accepted = await submit(tenant, api, token, receiver.url("localhost"))
    first = await callback_done(api, token, accepted["polling_url"])
    [req] = receiver.requests
    headers = {k: v for k, v in req.headers.items() if k.startswith("webhook-")}
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver holding either secret verifies
        Webhook(secret).verify(req.body, headers)

    r = await api.post(accepted["polling_url"] + "/callback/redeliver", headers=bearer(token))
    assert r.status_code == 202 and r.json()["webhook_id"] != first["callback"]["webhook_id"]
    await wait_until(lambda: received(receiver, 2), within=20)
    assert receiver.requests[1].headers["webhook-id"] == r.json()["webhook_id"]
    assert receiver.requests[1].body == req.body


async def test_callback_url_is_checked_at_submission(stack, api_of_stack):
    api, tenant = api_of_stack
    token = await tenant.token()
    for url in ("http://example.com/hook", "https://127.0.0.1/hook", "https://2130706433/", "https://0x7f.1/",
                "https://user@example.com/", "https://[::1]/", "https://169.254.169.254/latest", "ftp://x/",
                "https://10.0.0.8/", "not a url", 42):
        r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"}, callback_url=url)
        assert r.status_code == 422 and r.json()["code"] == "INVALID_CALLBACK_URL", url


SPECIAL_USE_URLS = [
    "https://localhost/hook", "https://LOCALHOST:3100/hook", "https://foo.localhost/hook", "https://localhost./hook",
    "https://Foo.LocalHost:8443/x", "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook",
    "https://localhost.localdomain/", "https://printer.local/", "https://metadata.google.internal/computeMetadata/v1/",
    "https://x.invalid/", "https://app.test/", "https://router.home.arpa/", "https://hidden.onion/", "https://x.alt/",
    "https://nas.lan/", "https://wiki.corp/"]


def _jobs_of(tenant: Tenant) -> int:
    with session_scope(tenant.ctx.engine) as s:
        return s.exec(select(func.count()).select_from(Job).where(Job.company_id == tenant.company_id)).one()


async def test_special_use_callback_names_are_refused_at_submission(cb_stack, cb_settings, receiver):
    """localhost, *.local, *.internal, ... are refused with 422 before any job exists, though loopback and private
    ranges are allow-listed: a CIDR admits addresses, never a special-use name. Only an exact allow-listed name
    passes, and then only that name."""
    app, api = cb_stack
    app.state.ctx.settings = cb_settings.model_copy(update={
        "callback_allow_cidrs": ["127.0.0.0/8", "10.0.0.0/8", "::1/128"], "callback_allow_hosts": []})
    tenant = Tenant(app, api)
    token = await tenant.token()
    for url in [*SPECIAL_USE_URLS, receiver.url("localhost")]:
        r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"}, callback_url=url)
        assert r.status_code == 422, (url, r.text)
        assert set(r.json()) == {"code", "message", "request_id"} and r.json()["code"] == "INVALID_CALLBACK_URL", url
    assert _jobs_of(tenant) == 0

    app.state.ctx.settings = cb_settings  # callback_allow_hosts: ["localhost"]
    for url in ("https://foo.localhost/hook", "https://localhost.localdomain/", "https://app.test/"):
        r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"}, callback_url=url)
        assert r.status_code == 422 and "special-use" in r.json()["message"], (url, r.text)
    assert _jobs_of(tenant) == 0
    r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"},
                      callback_url=receiver.url("LocalHost"))
    assert r.status_code == 202, r.text
    assert _jobs_of(tenant) == 1


@pytest.fixture
async def api_of_stack(stack):
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        yield api, Tenant(stack, api)


# --- the full schedule, in virtual time ------------------------------------------------------------------

async def test_full_retry_schedule_under_time_skipping():
    from dataapi.settings import Settings

    schedule = Settings().callback_schedule_seconds
    seen: list[tuple[int, float | None]] = []
    times = []

    @activity.defn(name="deliver_callback")
    async def always_failing(inp: AttemptInput) -> AttemptOutput:  # the receiver is down for three days
        seen.append((inp.attempt, inp.next_delay_seconds))
        times.append(activity.info().current_attempt_scheduled_time)
        return AttemptOutput("retry", 503, inp.next_delay_seconds)

    server = Path(sys.executable).parent / "temporal-test-server"
    async with await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(server)) as env:
        queue = f"cb-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=queue, workflows=[CallbackWorkflow], activities=[always_failing]):
            handle = await env.client.start_workflow(
                CallbackWorkflow.run, CallbackInput("msg_t", "job", schedule, 0.1), id=f"cb-{uuid.uuid4().hex}",
                task_queue=queue)
            assert await handle.result() == "failed"
            desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert [a for a, _ in seen] == list(range(1, len(schedule) + 1))
    for (_, delay), planned in zip(seen, schedule[1:] + [None], strict=True):
        if planned is None:
            assert delay is None
        else:
            assert planned * 0.9 <= delay <= planned * 1.1
    # The attempts happened that far apart in (virtual) time: about three days in all.
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    for gap, (_, delay) in zip(gaps, seen, strict=False):
        assert delay - 1 <= gap <= delay + 5
    assert timedelta(days=2.5) < times[-1] - times[0] < timedelta(days=3.5)


def test_concurrent_first_uses_agree_on_one_secret(db_url):
    """Six deliveries of a new company's first jobs at once sign with the one secret the company keeps."""
    import threading

    from dataapi.db import make_engine
    from dataapi.identity import service as identity
    from tests.conftest import unique_slug

    engine, box = make_engine(db_url), webhook_secrets.SecretBox(b"k" * 32)
    with session_scope(engine) as s:
        company_id = identity.create_company(s, unique_slug()).id
    seen, barrier = [], threading.Barrier(6)

    def first_use():
        barrier.wait()
        with session_scope(engine) as s:
            seen.append(webhook_secrets.current_secret(s, box, company_id))

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope(engine) as s:
        kept = webhook_secrets.current_secret(s, box, company_id)
    engine.dispose()
    assert seen == [kept] * 6
