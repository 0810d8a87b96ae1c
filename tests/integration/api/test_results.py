"""Results in the formats and codings people use, on the real stack: the sync execute by ``Accept`` (and
``?format=``), typed values read back with pyarrow and compared with the JSON answer; 406; gzip and zstd."""

from __future__ import annotations

import csv
import io
import zlib

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.support.data_api import bearer

TYPED_SQL = """
SELECT i AS id, 'name ' || i AS name, (i * 1.25)::DECIMAL(10, 2) AS amount, i % 2 = 0 AS even,
       DATE '2026-01-01' + i::INTEGER AS day, TIMESTAMPTZ '2026-01-01 10:00:00+00' AS at,
       [i, i + 1] AS pair, {'k': i} AS obj, CASE WHEN i = 3 THEN NULL ELSE i * 0.5 END AS half
FROM range(40) t(i) ORDER BY i
"""
URL = "/api/v1/data-api/default/typed/execute"


@pytest.fixture
async def typed(tenant):
    tenant.endpoint(slug="typed", sql=TYPED_SQL, max_rows=1000)
    return await tenant.token()


async def _post(api, token, accept=None, query="", encoding="identity"):
    headers = {**bearer(token), "Accept-Encoding": encoding}
    if accept is not None:
        headers["Accept"] = accept
    return await api.post(URL + query, json={}, headers=headers)


async def test_json_stays_the_seed_answer(typed, api):
    r = await _post(api, typed)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json" and "content-encoding" not in r.headers
    assert list(r.json()) == ["columns", "rows", "row_count", "truncated", "max_rows", "executed_at"]


async def test_formats_carry_the_same_values_with_their_types(typed, api):
    seed = (await _post(api, typed)).json()
    rows = seed["rows"]

    r = await _post(api, typed, "application/vnd.apache.parquet")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == [c["name"] for c in seed["columns"]]
    assert pa.types.is_decimal(table.schema.field("amount").type)
    assert pa.types.is_date(table.schema.field("day").type) and pa.types.is_boolean(table.schema.field("even").type)
    assert pa.types.is_list(table.schema.field("pair").type)
    values = table.to_pylist()
    assert [v["id"] for v in values] == [row["id"] for row in rows]
    assert [float(v["amount"]) for v in values] == [row["amount"] for row in rows]
    assert [v["day"].isoformat() for v in values] == [row["day"] for row in rows]
    assert [v["pair"] for v in values] == [row["pair"] for row in rows]
    assert values[3]["half"] is None and rows[3]["half"] is None

    r = await _post(api, typed, "application/vnd.apache.arrow.stream")
    assert r.status_code == 200, r.text
    arrow = pa.ipc.open_stream(r.content).read_all()
    assert arrow.equals(table)

    r = await _post(api, typed, None, "?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(p["id"]) for p in parsed] == [row["id"] for row in rows]
    assert [float(p["amount"]) for p in parsed] == [row["amount"] for row in rows]
    assert [orjson.loads(p["pair"]) for p in parsed] == [row["pair"] for row in rows]
    assert parsed[3]["half"] == ""

    r = await _post(api, typed, "application/x-ndjson")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert [orjson.loads(line) for line in r.content.splitlines()] == rows


async def test_an_unknown_format_is_406_with_the_list(typed, api):
    for accept, query in (("application/xml", ""), (None, "?format=xlsx")):
        r = await _post(api, typed, accept, query)
        assert r.status_code == 406, r.text
        body = r.json()
        assert body["code"] == "NOT_ACCEPTABLE" and "text/csv" in body["message"]
        assert "application/vnd.apache.arrow.stream" in body["message"]


async def test_weights_and_wildcards_choose(typed, api):
    r = await _post(api, typed, "application/x-ndjson;q=0.5, text/csv")
    assert r.headers["content-type"].startswith("text/csv")
    r = await _post(api, typed, "text/html, */*;q=0.8")  # a browser
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("fmt", ["", "?format=csv", "?format=ndjson"])
async def test_compressed_by_accept_encoding(typed, api, fmt):
    plain = await _post(api, typed, None, fmt)
    gz = await _post(api, typed, None, fmt, encoding="gzip")
    zs = await _post(api, typed, None, fmt, encoding="gzip;q=0.5, zstd")
    assert gz.headers["content-encoding"] == "gzip" and zs.headers["content-encoding"] == "zstd"
    for answer in (gz, zs):  # httpx decodes both codings
        if fmt:
            assert answer.content == plain.content
        else:  # JSON: executed_at differs between calls
            assert answer.json()["rows"] == plain.json()["rows"]
    # Compression is for text: Parquet goes as it is.
    pq_answer = await _post(api, typed, None, "?format=parquet", encoding="gzip, zstd")
    assert "content-encoding" not in pq_answer.headers


def test_zstd_and_gzip_frames_are_standard():
    from dataapi.data_api.results import compressed

    data = [b"a" * 5000, b"b" * 5000]
    assert zlib.decompress(b"".join(compressed(data, "gzip")), 31) == b"".join(data)
    frame = b"".join(compressed(data, "zstd"))
    assert zstandard.ZstdDecompressor().decompressobj().decompress(frame) == b"".join(data)


async def test_types_parquet_cannot_hold_are_stored_as_text(tenant, api):
    sql = ("SELECT INTERVAL 3 DAY AS span, TIMETZ '12:30:00+02' AS at, '{\"a\": 1}'::JSON AS doc, "
           "170141183460469231731687303715884105727::HUGEINT AS big")
    tenant.endpoint(slug="odd", sql=sql)
    token = await tenant.token()
    r = await api.post("/api/v1/data-api/default/odd/execute?format=parquet", json={}, headers=bearer(token))
    assert r.status_code == 200, r.text
    row = pq.read_table(io.BytesIO(r.content)).to_pylist()[0]
    assert row["span"] == "3 days" and row["at"].startswith("12:30:00")
    assert row["doc"] == '{"a": 1}' and int(row["big"]) == 2**127 - 1
    r = await api.post("/api/v1/data-api/default/odd/execute?format=ndjson", json={}, headers=bearer(token))
    assert orjson.loads(r.content) == {"span": "3 days", "at": row["at"], "doc": {"a": 1}, "big": str(2**127 - 1)}


async def test_a_sync_answer_in_another_format_holds_max_rows(tenant, api):
    tenant.endpoint(slug="capped", sql=TYPED_SQL, max_rows=10)
    token = await tenant.token()
    r = await api.post("/api/v1/data-api/default/capped/execute?format=csv", json={}, headers=bearer(token))
    assert r.status_code == 200 and r.headers["x-truncated"] == "true"
    assert [int(p["id"]) for p in csv.DictReader(io.StringIO(r.text))] == list(range(10))
    r = await api.post("/api/v1/data-api/default/typed/execute?format=arrow", json={}, headers=bearer(token))
    assert r.status_code == 404  # not this tenant's endpoint here: the same 404 in every format
