"""The result cache of sync endpoints on the real stack (SQLite and PostgreSQL store, the Temporal dev server, the
API's embedded query worker, DuckDB): a hit answers the fresh body plus ``"cached": true`` with no execution, and
a data load, an endpoint change, share contexts, permissions and Cache-Control are honoured."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from activities.duck.versions import load_file
from api.app import create_app
from cli.demo import write_sales_csv
from dataapi.data_api import service
from dataapi.db import make_engine, session_scope
from dataapi.models import CachedResult, Job
from dataapi.settings import Settings
from tests.support.data_api import SECOND_OF_WORK, Tenant, bearer, execute, served

COUNT_SQL = "SELECT count(*) AS n, sum(valor) AS total FROM vendas WHERE $regiao IS NULL OR regiao = $regiao"
REGIAO = [{"name": "regiao", "type": "string", "required": False}]


def _settings(tmp_path, db_url, temporal_env, payload_keyset, **extra) -> Settings:
    return Settings(var_dir=tmp_path / "var", data_dir=tmp_path / "data", artifact_dir=tmp_path / "artifacts",
                    database_url=db_url, payload_keyset=payload_keyset,
                    temporal_address=temporal_env.client.service_client.config.target_host,
                    task_queue_queries=extra.pop("task_queue_queries", f"queries-{uuid.uuid4().hex[:8]}"),
                    task_queue_callbacks=f"callbacks-{uuid.uuid4().hex[:8]}", query_heartbeat_seconds=2.0, **extra)


@contextlib.asynccontextmanager
async def api_process(settings: Settings, temporal_env):
    """One API 'process': its own app, engine and cache, with its embedded query worker, served over ASGI."""
    from worker import build_query_worker, query_activities

    engine = make_engine(settings.resolved_database_url)
    app = create_app(settings, engine, temporal_env.client)
    lane = app.state.ctx.sync_lane
    acts = query_activities(settings, lane)
    try:
        with lane.serving(acts.start_query):
            async with build_query_worker(temporal_env.client, settings, acts=acts), served(app) as api:
                yield app, api
    finally:
        engine.dispose()


@pytest.fixture
def cache_settings(tmp_path, db_url, temporal_env, payload_keyset) -> Settings:
    return _settings(tmp_path, db_url, temporal_env, payload_keyset)


@pytest.fixture
async def process(cache_settings, temporal_env):
    async with api_process(cache_settings, temporal_env) as pair:
        yield pair


@pytest.fixture
def cached_tenant(process) -> Tenant:
    app, api = process
    tenant = Tenant(app, api)
    tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=300)
    return tenant


def job_count(tenant: Tenant) -> int:
    with session_scope(tenant.ctx.engine) as s:
        return s.exec(select(func.count()).select_from(Job).where(Job.company_id == tenant.company_id)).one()[0]


async def call(api, token, params=None, headers=None, endpoint="default/contagem") -> httpx.Response:
    body = {"parameter_values": params} if params is not None else {}
    return await api.post(f"/api/v1/data-api/{endpoint}/execute", json=body,
                          headers={**bearer(token), **(headers or {})})


def without_cached(r: httpx.Response) -> bytes:
    assert r.content.endswith(b',"cached":true}'), r.text
    return r.content.removesuffix(b',"cached":true}') + b"}"


async def test_a_hit_is_the_fresh_answer_plus_cached_without_an_execution(cached_tenant, process):
    app, api = process
    token = await cached_tenant.token()
    fresh = await call(api, token, {"regiao": "Sul"})
    assert fresh.status_code == 200, fresh.text
    assert "cached" not in fresh.json() and "x-cache" not in fresh.headers
    jobs, lane = job_count(cached_tenant), app.state.ctx.sync_lane.stats
    started = lane.prefetched + lane.fell_back

    again = await call(api, token, {"regiao": "Sul"})
    assert again.status_code == 200, again.text
    assert without_cached(again) == fresh.content  # byte for byte, executed_at the original one
    assert again.json()["cached"] is True
    assert again.headers["x-cache"] == "HIT" and int(again.headers["age"]) >= 0
    with session_scope(cached_tenant.ctx.engine) as s:  # the header names the job that computed the result
        original = s.get(Job, again.headers["x-cache-job-id"])
        assert original is not None and original.company_id == cached_tenant.company_id
    assert job_count(cached_tenant) == jobs and lane.prefetched + lane.fell_back == started  # nothing ran
    stats = app.state.result_cache.stats
    assert stats.hits == 1 and stats.misses == 1 and stats.bytes > len(fresh.content) - 60

    other = await call(api, token, {"regiao": "Norte"})  # other values: another question
    assert "cached" not in other.json() and other.json()["rows"] != fresh.json()["rows"]
    # The same values spelled otherwise (null is the default) are the same question.
    await call(api, token, {})
    assert (await call(api, token, {"regiao": None})).json().get("cached") is True


async def test_a_data_load_makes_older_results_unreachable_at_once(cached_tenant, process):
    _, api = process
    token = await cached_tenant.token()
    before = (await call(api, token)).json()
    assert (await call(api, token)).json()["cached"] is True
    settings = cached_tenant.ctx.settings
    csv = write_sales_csv(settings.var_dir / "fewer.csv", rows=700)
    load_file(settings.resolved_data_dir, cached_tenant.slug, "vendas", csv)
    after = await call(api, token)
    assert after.status_code == 200 and "cached" not in after.json()
    assert before["rows"][0]["n"] == 2000 and after.json()["rows"][0]["n"] == 700
    assert (await call(api, token)).json()["rows"][0]["n"] == 700


async def test_an_endpoint_change_makes_older_results_unreachable_at_once(cached_tenant, process):
    _, api = process
    token = await cached_tenant.token()
    await call(api, token)
    assert (await call(api, token)).json()["cached"] is True
    cached_tenant.endpoint(slug="contagem", sql=COUNT_SQL.replace("count(*)", "count(*) + 1"), parameters=REGIAO,
                           cache_seconds=300)
    changed = (await call(api, token)).json()
    assert "cached" not in changed and changed["rows"][0]["n"] == 2001
    cached_tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=0)  # caching off
    assert "cached" not in (await call(api, token)).json() and "cached" not in (await call(api, token)).json()
    cached_tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=300, active=False)
    assert (await call(api, token)).status_code == 404  # gone is gone, cached or not


@pytest.mark.parametrize("cache_seconds", [300, 0])
async def test_a_sync_endpoint_made_async_answers_as_async_at_once(cached_tenant, process, monkeypatch,
                                                                    cache_seconds):
    """The process remembers the endpoint as a sync one, cached or not (its plain calls prepare on the loop); the
    change is still read by the next call, whose preparation on the loop gives way before writing: the job row
    is written on a worker thread, once, and the call answers 202."""
    _, api = process
    cached_tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=cache_seconds)
    token = await cached_tenant.token()
    await call(api, token)
    assert (await call(api, token)).status_code == 200
    cached_tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, execution_mode="async",
                           cache_seconds=cache_seconds)
    loop_thread, rows_written_on = threading.get_ident(), []
    create_job = service.jobs.create_job

    def recording(*args, **kwargs):
        rows_written_on.append(threading.get_ident())
        return create_job(*args, **kwargs)

    monkeypatch.setattr(service.jobs, "create_job", recording)
    before = job_count(cached_tenant)
    r = await call(api, token)
    assert r.status_code == 202, r.text
    assert job_count(cached_tenant) == before + 1
    assert len(rows_written_on) == 1 and rows_written_on[0] != loop_thread


async def test_share_contexts_and_permissions_come_before_the_cache(cached_tenant, process):
    _, api = process
    south, north = cached_tenant.user(), cached_tenant.user()
    cached_tenant.share(south[0], {"regiao": {"pinned": "Sul"}}, endpoint="default/contagem")
    cached_tenant.share(north[0], {"regiao": {"pinned": "Norte"}})
    south_token, north_token = await cached_tenant.token(user=south), await cached_tenant.token(user=north)
    sul = (await call(api, south_token)).json()
    assert (await call(api, south_token)).json()["cached"] is True
    norte = await call(api, north_token)  # the same request body, another pinned value: never the other's result
    assert "cached" not in norte.json() and norte.json()["rows"] != sul["rows"]
    assert (await call(api, north_token, {"regiao": "Sul"})).status_code == 422  # the pin still refuses
    free = await cached_tenant.token()  # no context: asking the same question gets the same (cached) answer
    shared = await call(api, free, {"regiao": "Sul"})
    assert shared.json()["cached"] is True and shared.json()["rows"] == sul["rows"]
    assert (await call(api, await cached_tenant.token(policies=()), {"regiao": "Sul"})).status_code == 403
    assert (await call(api, "not-a-token", {"regiao": "Sul"})).status_code == 401
    stranger = Tenant(*process)  # another company with the same endpoint and data: its own entries
    stranger.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=300)
    theirs = await call(api, await stranger.token(), {"regiao": "Sul"})
    assert "cached" not in theirs.json()


async def test_cache_control(cached_tenant, process):
    _, api = process
    token = await cached_tenant.token()
    first = await call(api, token)
    forced = await call(api, token, headers={"Cache-Control": "no-cache"})
    assert "cached" not in forced.json() and forced.json()["executed_at"] >= first.json()["executed_at"]
    hit = await call(api, token)  # no-cache refreshed the entry: the hit names the forced execution's job
    jobs = job_count(cached_tenant)
    assert hit.json()["cached"] is True
    unstored = await call(api, token, headers={"Cache-Control": "no-store"})
    assert "cached" not in unstored.json()
    assert (await call(api, token)).headers["x-cache-job-id"] == hit.headers["x-cache-job-id"]
    assert job_count(cached_tenant) == jobs + 1
    await asyncio.sleep(1.1)
    aged = await call(api, token)
    assert aged.headers["x-cache-job-id"] == hit.headers["x-cache-job-id"] and int(aged.headers["age"]) >= 1
    assert "cached" not in (await call(api, token, headers={"Cache-Control": "max-age=0"})).json()
    assert (await call(api, token, headers={"Accept": "text/csv"})).headers.get("x-cache") is None


async def test_a_hit_is_encoded_as_the_fresh_answer(cached_tenant, process):
    _, api = process
    cached_tenant.endpoint(slug="linhas", sql="SELECT id, regiao, produto FROM vendas ORDER BY id LIMIT 1500",
                           cache_seconds=300)
    token = await cached_tenant.token()
    for encoding in ("gzip", "identity"):
        headers = {"Accept-Encoding": encoding}
        fresh = await call(api, token, endpoint="default/linhas", headers={**headers, "Cache-Control": "no-cache"})
        hit = await call(api, token, endpoint="default/linhas", headers=headers)
        assert hit.headers["x-cache"] == "HIT" and "x-cache" not in fresh.headers
        assert hit.headers.get("content-encoding") == fresh.headers.get("content-encoding")
        assert hit.headers.get("vary") == fresh.headers.get("vary")
        assert without_cached(hit) == fresh.content
    assert hit.headers.get("content-encoding") is None
    assert fresh.json()["row_count"] == 1500


async def test_an_entry_expires_after_cache_seconds(process):
    app, api = process
    tenant = Tenant(app, api)
    tenant.endpoint(slug="curta", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=1)
    token = await tenant.token()
    first = await call(api, token, endpoint="default/curta")
    assert (await call(api, token, endpoint="default/curta")).json()["cached"] is True
    await asyncio.sleep(1.1)
    later = await call(api, token, endpoint="default/curta")
    assert "cached" not in later.json() and later.json()["rows"] == first.json()["rows"]
    assert app.state.result_cache.stats.shared_hits == 0  # the index row had expired too


async def test_identical_concurrent_misses_execute_once(process):
    app, api = process
    tenant = Tenant(app, api)
    tenant.endpoint(slug="lenta", sql=SECOND_OF_WORK, cache_seconds=60)
    token = await tenant.token()
    answers = await asyncio.gather(*(call(api, token, endpoint="default/lenta") for _ in range(5)))
    assert [r.status_code for r in answers] == [200] * 5
    assert sum("cached" not in r.json() for r in answers) == 1
    assert job_count(tenant) == 1 and app.state.result_cache.stats.coalesced == 4
    assert len({r.json()["executed_at"] for r in answers}) == 1


async def test_results_over_the_threshold_are_not_cached(tmp_path, db_url, temporal_env, payload_keyset):
    settings = _settings(tmp_path, db_url, temporal_env, payload_keyset, result_cache_max_entry_bytes=200)
    async with api_process(settings, temporal_env) as (app, api):
        tenant = Tenant(app, api)
        tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=300)
        tenant.endpoint(slug="linhas", sql="SELECT id, regiao, produto FROM vendas ORDER BY id LIMIT 50",
                        cache_seconds=300)
        token = await tenant.token()
        for _ in range(2):
            assert "cached" not in (await call(api, token, endpoint="default/linhas")).json()
        await call(api, token)
        assert (await call(api, token)).json()["cached"] is True  # small results still are
        stats = app.state.result_cache.stats
        assert stats.too_large == 2 and stats.entries == 1
        with session_scope(app.state.ctx.engine) as s:
            rows = s.exec(select(CachedResult.key).where(CachedResult.company_id == tenant.company_id)).all()
            assert len(rows) == 1


async def test_the_memory_tier_stays_within_its_bytes(tmp_path, db_url, temporal_env, payload_keyset):
    settings = _settings(tmp_path, db_url, temporal_env, payload_keyset, result_cache_bytes=1200,
                         metrics_public=True)
    async with api_process(settings, temporal_env) as (app, api):
        tenant = Tenant(app, api)
        tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=300)
        token = await tenant.token()
        for regiao in ("Sul", "Norte", "Nordeste", "Sudeste", "Centro-Oeste", None):
            await call(api, token, {"regiao": regiao})
            assert app.state.result_cache.stats.bytes <= 1200
        stats = app.state.result_cache.stats
        assert stats.evictions >= 1 and stats.entries < 6
        # An evicted entry is still found through the shared tier (and kept in memory again).
        again = await call(api, token, {"regiao": "Sul"})
        assert again.json()["cached"] is True and stats.shared_hits == 1
        metrics = (await api.get("/metrics")).text
        assert f"dataapi_result_cache_evictions_total {float(stats.evictions)}" in metrics
        assert f"dataapi_result_cache_bytes {float(stats.bytes)}" in metrics
        assert "dataapi_result_cache_max_bytes 1200.0" in metrics and "dataapi_result_cache_hits_total 1.0" in metrics
        lane = app.state.ctx.sync_lane.stats  # the six executions, each answered by the in-process handoff
        assert lane.handed_off == lane.prefetched == lane.adopted == 6 and lane.fell_back == lane.stopped == 0
        for name in ("handed_off", "prefetched", "adopted", "fell_back", "stopped"):
            assert f"dataapi_sync_lane_{name}_total {float(getattr(lane, name))}" in metrics


async def test_two_api_processes_share_a_hit(tmp_path, db_url, temporal_env, payload_keyset):
    # One store, data directory, artifact store and keys; each process its own memory tier (and worker).
    one = _settings(tmp_path, db_url, temporal_env, payload_keyset)
    two = _settings(tmp_path, db_url, temporal_env, payload_keyset)
    async with api_process(one, temporal_env) as (app1, api1), api_process(two, temporal_env) as (app2, api2):
        tenant = Tenant(app1, api1)
        tenant.endpoint(slug="contagem", sql=COUNT_SQL, parameters=REGIAO, cache_seconds=300)
        token = await tenant.token()
        fresh = await call(api1, token, {"regiao": "Sul"})
        jobs = job_count(tenant)
        elsewhere = await call(api2, token, {"regiao": "Sul"})
        assert without_cached(elsewhere) == fresh.content and job_count(tenant) == jobs
        assert app2.state.result_cache.stats.shared_hits == 1
        assert (await call(api2, token, {"regiao": "Sul"})).json()["cached"] is True  # now from its memory
        assert app2.state.result_cache.stats.shared_hits == 1


async def test_async_endpoints_stay_uncached(process):
    app, api = process
    tenant = Tenant(app, api)
    tenant.endpoint(slug="assincrona", sql=COUNT_SQL, parameters=REGIAO, execution_mode="async", cache_seconds=300)
    token = await tenant.token()
    ids = set()
    for _ in range(2):
        r = await call(api, token, endpoint="default/assincrona")
        assert r.status_code == 202, r.text
        ids.add(r.json()["job_id"])
    assert len(ids) == 2


@pytest.mark.parametrize("value", [-1, "60"])
async def test_cache_seconds_is_validated(value, tenant, api):
    admin = await tenant.token(policies=("VisualizationManager",))
    r = await api.put("/api/v1/admin/endpoints/default/x", headers=bearer(admin),
                      json={"sql": "SELECT 1 AS x", "cache_seconds": value})
    assert r.status_code == 400, r.text
    assert "cache_seconds" in r.json()["message"]


async def test_cache_seconds_in_admin_api_and_catalog(tenant, api):
    admin = await tenant.token(policies=("VisualizationManager",))
    r = await api.put("/api/v1/admin/endpoints/default/x", headers=bearer(admin),
                      json={"sql": "SELECT 1 AS x", "cache_seconds": 120})
    assert r.status_code in (200, 201), r.text
    assert r.json()["cache_seconds"] == 120
    entry = await api.get("/api/v1/data-api/default/x", headers=bearer(admin))
    assert entry.json()["cache_seconds"] == 120
    r = await execute(api, admin, "default/x")
    assert r.status_code == 200
