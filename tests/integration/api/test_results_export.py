"""Past max_rows: an async endpoint with ``export_max_rows`` stores every row (Parquet, in the artifact store) and
``GET .../jobs/{id}/result?offset=&limit=`` pages through it in any format. Runs on SQLite with the local store
and on PostgreSQL with an S3 store (moto)."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataapi.settings import Settings
from tests.support.data_api import ON_EACH_STORE, SECOND_OF_WORK, bearer, execute, settings_on_store, wait_job

ROWS = 50_000
EXPORT_SQL = (f"SELECT i AS n, 'row ' || i AS label, (i / 4)::DECIMAL(12, 2) AS quarter FROM range({ROWS}) t(i) "
              "ORDER BY i")


@pytest.fixture(**ON_EACH_STORE)
def stack_settings(request, tmp_path, temporal_env, payload_keyset, monkeypatch) -> Settings:
    return settings_on_store(request, tmp_path, temporal_env, payload_keyset, monkeypatch, query_heartbeat_seconds=2.0)


@pytest.fixture
async def export_job(tenant, api):
    tenant.endpoint(slug="export", sql=EXPORT_SQL, execution_mode="async", max_rows=100, export_max_rows=40_000)
    token = await tenant.token()
    r = await execute(api, token, "default/export")
    assert r.status_code == 202, r.text
    job = await wait_job(api, token, r.json()["polling_url"], within=60)
    return token, r.json()["polling_url"], job


async def test_the_job_body_is_the_seeds_plus_the_total_and_next(export_job, api):
    token, polling_url, job = export_job
    assert job["status"] == "completed", job
    assert job["result"]["row_count"] == 100 and job["result"]["truncated"] is True
    assert [r["n"] for r in job["result"]["rows"]] == list(range(100))
    assert job["total_row_count"] == 40_000 and job["export_truncated"] is True
    assert job["next"] == f"{polling_url}/result?offset=100&limit=100"
    compressed = await api.get(polling_url, headers={**bearer(token), "Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip" and compressed.json() == job


async def test_pages_in_every_format(export_job, api):
    token, polling_url, _ = export_job
    result = polling_url + "/result"
    r = await api.get(result, params={"offset": 39_990, "limit": 50}, headers=bearer(token))
    assert r.status_code == 200, r.text
    page = r.json()
    assert [row["n"] for row in page["rows"]] == list(range(39_990, 40_000))
    assert page["row_count"] == 10 and page["total_row_count"] == 40_000 and page["next"] is None
    assert page["columns"][2] == {"name": "quarter", "type": "decimal"}

    r = await api.get(result, params={"offset": 20_000, "limit": 3, "format": "csv"}, headers=bearer(token))
    assert r.status_code == 200 and r.headers["x-total-row-count"] == "40000"
    assert r.headers["link"] == f'<{result}?offset=20003&limit=3>; rel="next"'
    assert [int(p["n"]) for p in csv.DictReader(io.StringIO(r.text))] == [20_000, 20_001, 20_002]

    r = await api.get(result, params={"offset": 16_380, "limit": 10}, headers={
        **bearer(token), "Accept": "application/vnd.apache.parquet"})
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column("n").to_pylist() == list(range(16_380, 16_390))
    assert pa.types.is_decimal(table.schema.field("quarter").type)

    r = await api.get(result, headers={**bearer(token), "Accept": "application/vnd.apache.parquet"})
    whole = pq.read_table(io.BytesIO(r.content))  # the stored file itself
    assert whole.num_rows == 40_000 and whole.column("n").to_pylist() == list(range(40_000))

    r = await api.get(result, params={"limit": 5000, "format": "arrow"}, headers=bearer(token))
    assert pa.ipc.open_stream(r.content).read_all().column("n").to_pylist() == list(range(5000))

    r = await api.get(result, params={"offset": 100, "format": "ndjson"},
                      headers={**bearer(token), "Accept-Encoding": "zstd"})
    assert r.headers["content-encoding"] == "zstd" and len(r.content.splitlines()) == 39_900


async def test_bad_pages_and_unfinished_jobs(tenant, export_job, api):
    token, polling_url, _ = export_job
    for params in ({"offset": "-1"}, {"limit": "0"}, {"limit": "x"}):
        r = await api.get(polling_url + "/result", params=params, headers=bearer(token))
        assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMS", r.text
    r = await api.get(polling_url + "/result", params={"format": "xml"}, headers=bearer(token))
    assert r.status_code == 406
    other = await tenant.token(policies=())
    assert (await api.get(polling_url + "/result", headers=bearer(other))).status_code == 403
    missing = polling_url.rsplit("/", 1)[0] + "/" + "0" * 24 + "/result"
    assert (await api.get(missing, headers=bearer(token))).status_code == 404


async def test_any_async_job_reads_in_every_format_without_export_fields(tenant, api):
    token = await tenant.token()
    r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"})
    job = await wait_job(api, token, r.json()["polling_url"])
    assert "total_row_count" not in job and "next" not in job  # the seed's body: not an export endpoint
    r = await api.get(r.json()["polling_url"] + "/result", params={"format": "csv"}, headers=bearer(token))
    assert r.status_code == 200 and r.headers["x-total-row-count"] == str(job["result"]["row_count"])
    parsed = list(csv.DictReader(io.StringIO(r.text)))
    assert [p["produto"] for p in parsed] == [row["produto"] for row in job["result"]["rows"]]
    assert [float(p["total"]) for p in parsed] == [row["total"] for row in job["result"]["rows"]]


async def test_a_running_job_has_no_result_yet(tenant, api):
    tenant.endpoint(slug="slow", sql=SECOND_OF_WORK, execution_mode="async")
    token = await tenant.token()
    r = await execute(api, token, "default/slow")
    assert r.status_code == 202
    early = await api.get(r.json()["polling_url"] + "/result", headers=bearer(token))
    assert early.status_code == 409 and early.json()["code"] == "JOB_NOT_FINISHED"
    await wait_job(api, token, r.json()["polling_url"])
    done = await api.get(r.json()["polling_url"] + "/result", headers=bearer(token))
    assert done.status_code == 200 and done.json()["rows"] == [{"n": 0}]
