"""The Python client's results, jobs and discovery calls against the real stack (the app over httpx's ASGI
transport for the asyncio flavour, the same app on real HTTP for the sync flavour; the Temporal dev server, the
query worker, DuckDB, the artifact store): result formats and pages, streamed downloads, the job list,
cancel and delete, ``Idempotency-Key`` across the client's own retries, ``Prefer: respond-async``, 410, cache
headers, the catalog and the company's OpenAPI document."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta

import httpx
import pyarrow.ipc
import pyarrow.parquet
import pytest

from dataapi.client import (
    AsyncClient,
    AsyncJob,
    Client,
    IdempotencyKeyReusedError,
    Job,
    JobNotFinishedError,
    NotAcceptableError,
    NotFoundError,
    QueryResult,
    ResultExpiredError,
    ValidationError,
)
from dataapi.db import session_scope
from dataapi.models import Job as JobRow
from dataapi.models import as_utc
from tests.support.data_api import SLOW_SQL, Tenant, bearer
from tests.support.uvicorn_server import serving

SALES = "default/vendas-por-regiao"
NUMBERS = "default/numeros"  # async, 25 rows: n, dobro, nome


class Wire(httpx.AsyncBaseTransport):
    """The real ASGI transport, noting each request's method, path, status and headers; ``lose`` POSTs to
    paths ending so have their answer lost once (the server handled them, the caller sees a broken connection)."""

    def __init__(self, app, lose: str | None = None):
        self.inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.seen: list[tuple[str, str, int, httpx.Headers]] = []
        self.lose = lose

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.seen.append((request.method, request.url.path, response.status_code, request.headers))
        if self.lose and request.method == "POST" and request.url.path.endswith(self.lose):
            self.lose = None
            raise httpx.ReadError("connection lost after the request was handled", request=request)
        return response

    def posts(self) -> list[tuple[int, str | None]]:
        return [(s, h.get("idempotency-key")) for m, p, s, h in self.seen if m == "POST" and "/auth/" not in p]


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack, raise_app_exceptions=False),
                                 base_url="http://testserver", timeout=120) as c:
        yield c


@pytest.fixture
def tenant(stack, api) -> Tenant:
    t = Tenant(stack, api)
    t.endpoint(slug="numeros", execution_mode="async",
               sql="SELECT range AS n, range * 2 AS dobro, 'n' || range AS nome FROM range(25) ORDER BY n")
    return t


def client_of(stack, tenant: Tenant, transport: httpx.AsyncBaseTransport | None = None, **kw) -> AsyncClient:
    _, key, secret = tenant.user()
    return AsyncClient("http://testserver", tenant.slug, key, secret,
                       transport=transport or httpx.ASGITransport(app=stack, raise_app_exceptions=False), **kw)


async def test_a_jobs_result_in_every_format_paged_and_streamed(tenant, stack, api, tmp_path):
    async with client_of(stack, tenant) as client:
        job = await client.submit(NUMBERS)
        result = await job.wait(timeout=60, poll_interval=0.05)
        token = (await client._token()).access  # the same caller's raw view of the same route
        raw = await api.get(f"{job.polling_url}/result", params={"format": "csv"}, headers=bearer(token))
        as_csv = await job.fetch_result("csv")
        as_json = json.loads(await job.fetch_result())
        ndjson = await job.fetch_result("ndjson", offset=20)
        parquet = pyarrow.parquet.read_table(io.BytesIO(await job.fetch_result("parquet")))
        arrow = pyarrow.ipc.open_stream(await job.fetch_result("arrow", offset=5, limit=3)).read_all()
        first = await job.page(0, 10)
        pages = [p async for p in job.pages(limit=10)]
        chunks = [c async for c in job.iter_result("csv")]
        saved = await job.save_result(tmp_path / "numeros.parquet", "parquet")
        with pytest.raises(ValueError, match="format must be one of"):
            await job.fetch_result("xml")
        with pytest.raises(ValidationError) as bad:
            await job.page(-1)
    rows = [{"n": i, "dobro": 2 * i, "nome": f"n{i}"} for i in range(25)]
    assert result.rows == rows and as_json["rows"] == rows and as_json["total_row_count"] == 25
    assert as_csv == raw.content and raw.status_code == 200
    assert list(csv.DictReader(io.StringIO(as_csv.decode()))) == [{k: str(v) for k, v in r.items()} for r in rows]
    assert [json.loads(line) for line in ndjson.decode().splitlines()] == rows[20:]
    assert parquet.to_pylist() == rows and arrow.to_pylist() == rows[5:8]
    assert (first.rows, first.offset, first.total_row_count, first.following()) == (rows[:10], 0, 25, 10)
    assert first.next and "offset=10" in first.next
    assert [p.offset for p in pages] == [0, 10, 20] and [r for p in pages for r in p.rows] == rows
    assert pages[-1].next is None and b"".join(chunks) == as_csv
    assert pyarrow.parquet.read_table(saved).to_pylist() == rows and not saved.with_suffix(".parquet.part").exists()
    assert bad.value.status == 400 and bad.value.code == "INVALID_PARAMS"


async def test_job_list_cancel_and_delete(tenant, stack):
    tenant.endpoint(slug="lento", sql=SLOW_SQL, execution_mode="async")
    async with client_of(stack, tenant) as client:
        done = [await client.submit(NUMBERS) for _ in range(3)]
        for job in done:
            await job.wait(timeout=60, poll_interval=0.05)
        listed = [j async for j in client.jobs(NUMBERS, page_size=2)]
        completed = [j async for j in client.jobs(NUMBERS, status="completed", since="2000-01-01")]
        none_later = [j async for j in client.jobs(NUMBERS, since="2999-01-01")]
        with pytest.raises(ValidationError):
            [j async for j in client.jobs(NUMBERS, status="done")]

        slow = await client.submit("default/lento")
        with pytest.raises(JobNotFinishedError) as running:
            await slow.fetch_result()
        assert (await slow.cancel()) is slow
        cancelled = await client.get_job("default/lento", slow.job_id)

        deleted = await done[0].cancel()
        with pytest.raises(NotFoundError):
            await client.get_job(NUMBERS, done[0].job_id)
        remaining = [j.job_id async for j in client.jobs(NUMBERS)]
    assert [j.job_id for j in listed] == [j.job_id for j in reversed(done)]
    assert all(isinstance(j, AsyncJob) and j.status == "completed" and j.created_at for j in listed)
    assert listed[0].polling_url == done[-1].polling_url and listed[0].result is None
    assert len(completed) == 3 and none_later == []
    assert running.value.status == 409 and running.value.code == "JOB_NOT_FINISHED"
    assert (slow.status, slow.error) == ("failed", "Cancelled by caller")
    assert (cancelled.status, cancelled.error) == ("failed", "Cancelled by caller")
    assert deleted.deleted and remaining == [done[2].job_id, done[1].job_id]


async def test_an_idempotency_key_survives_the_clients_own_retry(tenant, stack):
    """The answer to the first POST is lost after the server made the job: the client sends it again with the
    same key and gets the same job, so the endpoint has one job, not two."""
    wire = Wire(stack, lose="/execute")
    async with client_of(stack, tenant, wire, retries=2) as client:
        job = await client.submit(NUMBERS, idempotency_key=True)
        await job.wait(timeout=60, poll_interval=0.05)
        listed = [j.job_id async for j in client.jobs(NUMBERS)]
        again = await client.submit(NUMBERS, idempotency_key="pedido-42")
        same = await client.submit(NUMBERS, idempotency_key="pedido-42")
        with pytest.raises(IdempotencyKeyReusedError) as reused:
            await client.submit("default/relatorio-mensal", {"mes": "2026-03"}, idempotency_key="pedido-42")
    posts = wire.posts()
    assert [s for s, _ in posts[:2]] == [202, 202] and posts[0][1] == posts[1][1] and len(posts[0][1]) == 32
    assert listed == [job.job_id]
    assert again.job_id == same.job_id != job.job_id and posts[2][1] == posts[3][1] == "pedido-42"
    assert reused.value.status == 422 and reused.value.code == "IDEMPOTENCY_KEY_REUSED"


async def test_a_lost_answer_without_a_key_is_not_sent_again(tenant, stack):
    wire = Wire(stack, lose="/execute")
    async with client_of(stack, tenant, wire, retries=2) as client:
        with pytest.raises(httpx.ReadError):
            await client.submit(NUMBERS)
    assert [s for s, _ in wire.posts()] == [202]  # one job made, and the caller told the answer was lost


async def test_wait_async_gives_rows_or_a_job(tenant, stack):
    ctx = stack.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"sync_timeout_seconds": 3.0})
    tenant.endpoint(slug="lento", sql="SELECT count(*) AS n FROM range(12000) a, range(12000) b "
                                      "WHERE a.range * b.range = -1")
    async with client_of(stack, tenant) as client:
        quick = await client.execute(SALES, wait_async=3, data_inicio="2026-01-01")
        job = await client.execute("default/lento", wait_async=0.2)
        submitted = await client.submit(SALES, {"data_inicio": "2026-01-01"}, wait_async=3)
        result = await job.wait(timeout=60, poll_interval=0.1)
    assert isinstance(quick, QueryResult) and quick.row_count == 5
    assert isinstance(job, AsyncJob) and job.job_id and result.rows == [{"n": 0}]
    assert submitted.status == "completed" and submitted.job_id is None and submitted.result.row_count == 5


async def test_an_expired_result_is_410(tenant, stack):
    async with client_of(stack, tenant) as client:
        job = await client.submit(NUMBERS)
        await job.wait(timeout=60, poll_interval=0.05)
        with session_scope(tenant.ctx.engine) as s:
            row = s.get(JobRow, job.job_id)
            row.completed_at = as_utc(row.completed_at) - timedelta(days=30)
            s.add(row)
        with pytest.raises(ResultExpiredError) as expired:
            await job.fetch_result("csv")
    assert expired.value.status == 410 and expired.value.code == "RESULT_EXPIRED"
    assert "expired at" in expired.value.message and expired.value.request_id


async def test_cache_headers_and_formats_of_a_sync_execution(tenant, stack):
    tenant.endpoint(slug="em-cache", sql="SELECT 7 AS sete", cache_seconds=60)
    async with client_of(stack, tenant) as client:
        fresh = await client.execute("default/em-cache")
        hit = await client.execute("default/em-cache")
        as_csv = await client.export(SALES, {"data_inicio": "2026-01-01", "regiao": "Sul"})
        whole = await client.export(NUMBERS, format="ndjson")
        sync_job = [j async for j in client.jobs("default/em-cache")][0]  # a sync job keeps its JSON only
        kept = json.loads(await sync_job.fetch_result())
        with pytest.raises(NotAcceptableError) as not_acceptable:
            await sync_job.fetch_result("csv")
    assert (fresh.cached, hit.cached) == (False, True) and hit.rows == fresh.rows == [{"sete": 7}]
    assert hit.age is not None and hit.age >= 0 and fresh.request_id and hit.request_id != fresh.request_id
    assert as_csv.decode().splitlines()[0] == '"regiao","total"' and len(as_csv.decode().splitlines()) == 2
    assert [json.loads(line)["n"] for line in whole.decode().splitlines()] == list(range(25))
    assert kept["rows"] == [{"sete": 7}] and not_acceptable.value.status == 406


async def test_catalog_endpoint_and_openapi(tenant, stack, api):
    async with client_of(stack, tenant) as client:
        catalog = await client.catalog()
        entry = await client.endpoint(SALES)
        document = await client.openapi()
        token = (await client._token()).access
        with pytest.raises(NotFoundError) as missing:
            await client.endpoint("default/nao-existe")
    raw = await api.get("/api/v1/data-api/endpoints", headers=bearer(token))
    assert catalog == raw.json()
    assert {(e["namespace"], e["slug"]) for e in catalog} >= {("default", "vendas-por-regiao"), ("default", "numeros")}
    assert entry == (await api.get(f"/api/v1/data-api/{SALES}", headers=bearer(token))).json()
    assert entry["slug"] == "vendas-por-regiao" and "columns" in entry
    assert "data_inicio" in {p["name"] for p in entry["parameters"]}
    assert f"/api/v1/data-api/{SALES}/execute" in document["paths"]
    assert missing.value.code == "ENDPOINT_NOT_FOUND"


async def test_the_sync_flavour_over_http(tenant, stack, tmp_path):
    """The blocking client against the same app served on a loopback port (uvicorn on this loop, the client in
    a thread)."""
    _, key, secret = tenant.user()
    async with serving(stack, lifespan="off") as base_url:

        def scenario() -> dict:
            with Client(base_url, tenant.slug, key, secret, retries=1) as client:
                out: dict = {"catalog": client.catalog(), "entry": client.endpoint(NUMBERS),
                             "openapi": client.openapi()}
                job = client.submit(NUMBERS, idempotency_key="sync-1")
                out["same"] = client.submit(NUMBERS, idempotency_key="sync-1").job_id == job.job_id
                job.wait(timeout=60, poll_interval=0.05)
                out["csv"] = job.fetch_result("csv", offset=0, limit=3)
                out["pages"] = [p.offset for p in job.pages(limit=10)]
                out["stream"] = b"".join(job.iter_result("ndjson"))
                out["saved"] = job.save_result(tmp_path / "n.arrow", "arrow")
                out["listed"] = [j.job_id for j in client.jobs(NUMBERS)]
                out["rows"] = client.execute(SALES, wait_async=5, data_inicio="2026-01-01")
                out["export"] = client.export(SALES, {"data_inicio": "2026-01-01"}, format="parquet")
                out["cancel"] = job.cancel().deleted
                out["job"] = job
                return out

        out = await asyncio.to_thread(scenario)
    assert any(e["slug"] == "numeros" for e in out["catalog"]) and out["entry"]["slug"] == "numeros"
    assert f"/api/v1/data-api/{NUMBERS}/execute" in out["openapi"]["paths"] and out["same"]
    assert list(csv.reader(io.StringIO(out["csv"].decode()))) == [["n", "dobro", "nome"], ["0", "0", "n0"],
                                                                  ["1", "2", "n1"], ["2", "4", "n2"]]
    assert out["pages"] == [0, 10, 20]
    assert [json.loads(line)["n"] for line in out["stream"].decode().splitlines()] == list(range(25))
    with pyarrow.ipc.open_stream(out["saved"].read_bytes()) as reader:
        assert reader.read_all().num_rows == 25
    assert out["listed"] == [out["job"].job_id] and isinstance(out["job"], Job)
    assert isinstance(out["rows"], QueryResult) and out["rows"].row_count == 5
    assert pyarrow.parquet.read_table(io.BytesIO(out["export"])).num_rows == 5
    assert out["cancel"] is True
