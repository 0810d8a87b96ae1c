"""Temporal payload encryption (dataapi/codec.py) and the codec endpoint the Temporal UI decodes through
(api/codec.py): what a tenant sends (SQL, parameter values, error texts) is ciphertext in Temporal's store, read
back only with the keyset, and decoded over HTTP only for the operator."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import stat
import time
import uuid

import httpx
import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.worker import Replayer

from api.app import create_app
from api.codec import COOKIE, _session_value
from cli.dev import temporal_command
from dataapi import codec, temporal
from dataapi.converter import DATA_CONVERTER, data_converter
from dataapi.db import make_engine
from dataapi.messages import QueryInput, QueryOutput
from dataapi.settings import Settings
from tests.support.data_api import SLOW_SQL, Tenant, execute, served, wait_job
from tests.support.jobs_api import Org
from worker import build_job_worker, build_query_worker
from workflows.query import QueryWorkflow

SQL_MARK = "marca-sql-5d1e9"  # in the endpoint's SQL only
VALUE_MARK = "valor-secreto-77b3"  # a caller's parameter value
TABLE_MARK = "tabela_marca_c41f"  # in a failing query's SQL
FAILURE_TEXT = f"Catalog Error: Table with name {TABLE_MARK} does not exist"  # how the failure's message starts
SECRET_SQL = f"SELECT '{SQL_MARK}' AS marca, $valor AS valor"
PARAMS = [{"name": "valor", "type": "string", "required": True}]


def _payload(data: bytes = b'{"sql": "SELECT 1"}', **metadata: bytes) -> Payload:
    return Payload(metadata={"encoding": b"json/plain", **metadata}, data=data)


def _codec(keyset: dict | None = None, **kw) -> codec.EncryptionCodec:
    return codec.EncryptionCodec.from_keyset(keyset or codec.new_keyset(), **kw)


# --- the codec -------------------------------------------------------------------------------------------

async def test_a_payload_round_trips_with_its_metadata_inside_the_ciphertext():
    c = _codec()
    original = _payload(b'{"sql": "SELECT secret"}', **{"messageType": b"QueryInput"})
    [sealed] = await c.encode([original])
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert sealed.metadata["encryption-key-id"] == c.active_kid.encode()
    assert set(sealed.metadata) == {"encoding", "encryption-key-id", "encryption-cipher"}  # the original's: inside
    assert b"secret" not in sealed.SerializeToString() and b"QueryInput" not in sealed.SerializeToString()
    [again] = await c.encode([original])
    assert again.data[:12] != sealed.data[:12] and again.data != sealed.data  # a fresh nonce per payload
    assert await c.decode([sealed, again]) == [original, original]


async def test_plaintext_payloads_pass_through_decoding():
    c = _codec()
    plain = [_payload(), Payload(metadata={"encoding": b"binary/null"})]
    assert await c.decode(plain) == plain


async def test_rotation_new_payloads_use_the_new_key_and_old_ones_still_decode():
    old = codec.new_keyset()
    [before] = await _codec(old).encode([_payload()])
    rotated, kid = codec.rotate_keyset(old)
    assert rotated["active_kid"] == kid != old["active_kid"] and set(old["keys"]) < set(rotated["keys"])
    c = _codec(rotated)
    [after] = await c.encode([_payload()])
    assert after.metadata["encryption-key-id"] == kid.encode()
    assert before.metadata["encryption-key-id"] == old["active_kid"].encode()
    assert await c.decode([before, after]) == [_payload(), _payload()]
    staged, new = codec.rotate_keyset(old, activate=False)  # a rolling rotation's first step
    assert staged["active_kid"] == old["active_kid"] and new in staged["keys"]


async def test_an_unknown_key_id_fails_clearly():
    [sealed] = await _codec().encode([_payload()])
    with pytest.raises(codec.PayloadDecryptionError, match=r"key id 'p[0-9a-f]{8}', which is not in the keyset"):
        await _codec().decode([sealed])


async def test_tampered_or_relabelled_ciphertext_fails_authentication():
    keyset = codec.new_keyset()
    keyset, other = codec.rotate_keyset(keyset, activate=False)
    c = _codec(keyset)
    [sealed] = await c.encode([_payload()])
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(codec.PayloadDecryptionError, match="fails authentication"):
        await c.decode([flipped])
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": other.encode()}, data=sealed.data)
    with pytest.raises(codec.PayloadDecryptionError, match="fails authentication"):  # the key id is bound in
        await c.decode([relabelled])
    with pytest.raises(codec.PayloadDecryptionError):
        await c.decode([Payload(metadata=sealed.metadata, data=sealed.data[:10])])


async def test_switched_off_writes_plaintext_and_still_reads_ciphertext():
    keyset = codec.new_keyset()
    [sealed] = await _codec(keyset).encode([_payload()])
    off = _codec(keyset, encrypt=False)
    assert await off.encode([_payload()]) == [_payload()]
    assert await off.decode([sealed]) == [_payload()]
    converter = data_converter(Settings(payload_keyset=json.dumps(keyset), payload_encryption=False))
    assert not isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)


@pytest.mark.parametrize("keyset, message", [
    ("not json", "not valid JSON"),
    ('{"active_kid": "a", "keys": {}}', "must be"),
    ('{"active_kid": "a", "keys": {"a": "!!"}}', "not valid base64"),
    ('{"active_kid": "a", "keys": {"a": "' + base64.b64encode(b"x" * 16).decode() + '"}}', "16 bytes"),
    ('{"active_kid": "b", "keys": {"a": "' + base64.b64encode(b"x" * 32).decode() + '"}}', "'b' is not in"),
])
def test_a_malformed_keyset_stops_the_process(keyset, message):
    with pytest.raises(ValueError, match=message):
        codec.payload_codec(Settings(payload_keyset=keyset))


def test_the_embedded_keyset_is_generated_once_private_and_rotates_in_place(tmp_path):
    settings = Settings(var_dir=tmp_path / "var")
    first = codec.payload_keyset(settings)
    path = codec.keyset_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert codec.payload_keyset(settings) == first  # read back, not regenerated
    kid = codec.rotate_embedded_keyset(settings)
    rotated = codec.payload_keyset(settings)
    assert rotated["active_kid"] == kid and rotated["keys"][first["active_kid"]] == first["keys"][first["active_kid"]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="DATAAPI_PAYLOAD_KEYSET"):
        codec.rotate_embedded_keyset(settings.model_copy(update={"payload_keyset": json.dumps(first)}))


def test_the_cli_rotates_the_embedded_keyset(tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.setenv("DATAAPI_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("DATAAPI_PAYLOAD_KEYSET", raising=False)
    from dataapi.settings import get_settings
    get_settings.cache_clear()
    try:
        before = codec.payload_keyset(Settings(var_dir=tmp_path / "var"))
        assert main(["payload-keys", "rotate"]) == 0
        after = codec.payload_keyset(Settings(var_dir=tmp_path / "var"))
        assert after["active_kid"] in capsys.readouterr().out and set(before["keys"]) < set(after["keys"])
        monkeypatch.setenv("DATAAPI_PAYLOAD_KEYSET", json.dumps(after))
        get_settings.cache_clear()
        assert main(["payload-keys", "rotate"]) == 0  # the env form: the rotated keyset is printed, nothing written
        printed = json.loads(capsys.readouterr().out)
        assert set(after["keys"]) < set(printed["keys"]) and codec.payload_keyset(
            Settings(var_dir=tmp_path / "var")) == after
    finally:
        get_settings.cache_clear()


async def test_connect_gives_every_client_the_codec_and_encoded_failures(stack_settings):
    client = await temporal.connect(stack_settings, lazy=True)
    converter = client.data_converter
    assert isinstance(converter.payload_codec, codec.EncryptionCodec)
    assert converter.payload_codec.active_kid == json.loads(stack_settings.payload_keyset)["active_kid"]
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    assert converter.payload_converter_class is DATA_CONVERTER.payload_converter_class  # the orjson fast path


# --- end to end: what Temporal stores --------------------------------------------------------------------

def _payloads_in(message: Message):
    """Every Payload in a history event, search attributes aside (indexed plaintext by design: slugs only)."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values()
        elif field.is_repeated:
            values = value
        else:
            values = [value]
        for v in values:
            if isinstance(v, Payload):
                yield v
            elif isinstance(v, Message):
                yield from _payloads_in(v)


@pytest.fixture
async def plain_client(temporal_env) -> Client:
    """A client with no codec: what anyone reaching Temporal's frontend reads."""
    return await Client.connect(temporal_env.client.service_client.config.target_host)


async def _raw_history(plain_client: Client, workflow_id: str, within: float = 30.0):
    handle = plain_client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + within
    while True:
        history = await handle.fetch_history()
        if history.events[-1].event_type in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
                                             EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED):
            return history
        assert time.monotonic() < deadline, f"workflow {workflow_id} did not close"
        await asyncio.sleep(0.1)


def _assert_ciphertext(history, *marks: str) -> int:
    raw = b"".join(e.SerializeToString() for e in history.events) + history.to_json().encode()
    for mark in marks:
        assert mark.encode() not in raw, f"{mark!r} readable in the history of {history.workflow_id}"
    payloads = []
    for event in history.events:
        found = list(_payloads_in(event))
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            # A local activity's marker: its "data" detail is the SDK core's own bookkeeping, written past the
            # codec (ids, attempt, times); its "result" is ours, and encrypted.
            details = event.marker_recorded_event_attributes.details
            data = details["data"].payloads[0]
            assert set(json.loads(data.data)) <= LOCAL_ACTIVITY_MARKER_FIELDS, data.data
            found = [p for p in found if p is not data and p != data]
            assert details["result"].payloads[0] in found
        payloads += found
    assert payloads, "no payload found"
    for p in payloads:
        assert p.metadata["encoding"] == b"binary/encrypted", p
    return len(payloads)


LOCAL_ACTIVITY_MARKER_FIELDS = {"seq", "attempt", "activity_id", "activity_type", "complete_time", "backoff",
                                "original_schedule_time", "activation_index"}


@pytest.fixture
async def tenant(stack):
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api:
        t = Tenant(stack, api)
        t.endpoint(slug="segredo", sql=SECRET_SQL, parameters=PARAMS)
        t.endpoint(slug="segredo-async", sql=SECRET_SQL, parameters=PARAMS, execution_mode="async")
        t.endpoint(slug="quebrado", sql=f"SELECT * FROM {TABLE_MARK}")
        yield t


async def test_sync_and_async_executions_are_ciphertext_in_temporal(tenant, plain_client, temporal_env,
                                                                    stack_settings):
    token = await tenant.token()
    r = await execute(tenant.client, token, "default/segredo", {"valor": VALUE_MARK})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [{"marca": SQL_MARK, "valor": VALUE_MARK}]  # the fast lane still answers
    [sync_id] = _job_ids(tenant)
    r = await execute(tenant.client, token, "default/segredo-async", {"valor": VALUE_MARK})
    assert r.status_code == 202, r.text
    job = await wait_job(tenant.client, token, r.json()["polling_url"])
    assert job["status"] == "completed" and job["result"]["rows"][0]["valor"] == VALUE_MARK, job
    async_id = r.json()["job_id"]
    r = await execute(tenant.client, token, "default/quebrado")
    assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR", r.text
    message = r.json()["message"]
    assert message.startswith(FAILURE_TEXT), message
    [failed_id] = _job_ids(tenant, "failed")

    for workflow_id in (sync_id, async_id):
        history = await _raw_history(plain_client, workflow_id)
        _assert_ciphertext(history, SQL_MARK, VALUE_MARK, "SELECT")
    failed = await _raw_history(plain_client, failed_id)
    _assert_ciphertext(failed, TABLE_MARK, "SELECT", FAILURE_TEXT)
    failure = failed.events[-1].workflow_execution_failed_event_attributes.failure
    assert failure.message == "Encoded failure" and not failure.stack_trace  # what the UI and the CLI show
    assert failure.application_failure_info.type == "ExecutionError"  # the type stays readable: it is no secret
    assert failure.encoded_attributes.metadata["encoding"] == b"binary/encrypted"

    # A client without the keys reads nothing; one with them reads everything.
    with pytest.raises(Exception, match="binary/encrypted"):  # no converter reads that encoding
        await plain_client.get_workflow_handle(sync_id).result()
    out = await temporal_env.client.get_workflow_handle(sync_id, result_type=QueryOutput).result()
    assert out.status == "completed" and out.row_count == 1
    with pytest.raises(WorkflowFailureError) as e:
        await temporal_env.client.get_workflow_handle(failed_id).result()
    assert e.value.cause.message == message and e.value.cause.type == "ExecutionError"
    [inp] = await temporal_env.client.data_converter.decode(
        (await _raw_history(plain_client, sync_id)).events[0]
        .workflow_execution_started_event_attributes.input.payloads, [QueryInput])
    assert SQL_MARK in inp.sql and inp.params == {"valor": VALUE_MARK}

    # The encrypted history replays through the codec, and not without it.
    history = await _raw_history(plain_client, sync_id)
    replayed = await Replayer(workflows=[QueryWorkflow], data_converter=temporal_env.client.data_converter
                              ).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    blind = await Replayer(workflows=[QueryWorkflow], data_converter=DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=False)
    assert blind.replay_failure is not None


def _job_ids(tenant: Tenant, status: str | None = None) -> list[str]:
    from sqlmodel import select

    from dataapi.db import session_scope
    from dataapi.models import Job

    query = select(Job.id).where(Job.company_id == tenant.company_id)
    with session_scope(tenant.ctx.engine) as s:
        return list(s.exec(query.where(Job.status == status) if status else query).all())


async def test_the_api_reads_failures_through_the_encoded_failure(stack_settings, temporal_env, plain_client):
    """No handoff (a thin API, the worker on its own connection): the API classifies a failed query from the
    workflow's failure, which Temporal holds as "Encoded failure"; the codec gives the API its type and text."""
    settings = stack_settings.model_copy(update={"api_query_worker": False})
    engine = make_engine(settings.resolved_database_url)
    app = create_app(settings, engine, temporal_env.client)
    other = await temporal.connect(settings)  # a worker process of its own, with the same keyset
    try:
        async with served(app) as api, build_query_worker(other, settings):
            t = Tenant(app, api)
            t.endpoint(slug="quebrado", sql=f"SELECT * FROM {TABLE_MARK}")
            r = await execute(api, await t.token(), "default/quebrado")
            assert r.status_code == 500 and r.json()["code"] == "EXECUTION_ERROR", r.text
            assert r.json()["message"].startswith(FAILURE_TEXT), r.text
            [failed_id] = _job_ids(t, "failed")
            failed = await _raw_history(plain_client, failed_id)
            _assert_ciphertext(failed, TABLE_MARK, FAILURE_TEXT)
            t.endpoint(slug="lento", sql=SLOW_SQL)  # a timeout is told apart by the failure too
            app.state.ctx.settings = settings.model_copy(update={"sync_timeout_seconds": 1.0})
            r = await execute(api, await t.token(), "default/lento")
            assert r.status_code == 408 and r.json()["code"] == "EXECUTION_TIMEOUT", r.text
    finally:
        engine.dispose()


async def test_a_jobs_api_job_is_ciphertext_in_temporal(stack_settings, temporal_env, plain_client):
    from tests.conftest import app_and_client

    settings = stack_settings.model_copy(update={"task_queue_jobs": f"jobs-{uuid.uuid4().hex[:8]}"})
    async with app_and_client(settings, temporal_env.client) as (app, api), \
            build_job_worker(temporal_env.client, settings):
        org = Org(app, api)
        r = await org.submit(repository="falha", params={"segredo": VALUE_MARK})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        await org.finished(job_id)
        history = await _raw_history(plain_client, job_id, within=60)
        _assert_ciphertext(history, VALUE_MARK)


# --- the codec endpoint ----------------------------------------------------------------------------------

OPERATOR = "operator-" + uuid.uuid4().hex
UI = "http://localhost:8233"


@pytest.fixture
async def codec_api(settings, payload_keyset):
    s = settings.model_copy(update={"codec_token": OPERATOR, "payload_keyset": payload_keyset})
    engine = make_engine(s.resolved_database_url)
    app = create_app(s, engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
    engine.dispose()


def _wire(payloads: list[Payload]) -> dict:
    """Proto JSON, as the Temporal UI sends them."""
    return {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in payloads]}


def _unwire(body: dict) -> list[Payload]:
    return [Payload(metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
                    data=base64.b64decode(p.get("data", ""))) for p in body["payloads"]]


OP = {"Authorization": f"Bearer {OPERATOR}", "X-Namespace": "default"}


async def test_the_codec_endpoint_decodes_for_the_operator_only(codec_api, payload_keyset):
    c = codec.EncryptionCodec.from_keyset(json.loads(payload_keyset))
    original = _payload(f'{{"sql": "{SQL_MARK}"}}'.encode())
    sealed = await c.encode([original])
    body = _wire([*sealed, _payload(b'"plain"')])
    r = await codec_api.post("/api/v1/temporal-codec/decode", json=body, headers=OP)
    assert r.status_code == 200, r.text
    assert _unwire(r.json()) == [original, _payload(b'"plain"')]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {OPERATOR}"}):
        r = await codec_api.post("/api/v1/temporal-codec/decode", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED", r.text
        assert SQL_MARK not in r.text
    r = await codec_api.post("/api/v1/temporal-codec/encode", json=_wire([original]), headers=OP)
    assert r.status_code == 200 and _unwire(r.json())[0].metadata["encoding"] == b"binary/encrypted"
    assert await c.decode(_unwire(r.json())) == [original]


async def test_the_codec_endpoint_refuses_bad_input_clearly(codec_api, payload_keyset):
    [sealed] = await codec.EncryptionCodec.from_keyset(json.loads(payload_keyset)).encode([_payload()])
    tampered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + b"\x00")
    r = await codec_api.post("/api/v1/temporal-codec/decode", json=_wire([tampered]), headers=OP)
    assert r.status_code == 422 and r.json()["code"] == "PAYLOAD_UNDECODABLE", r.text
    [foreign] = await _codec().encode([_payload()])
    r = await codec_api.post("/api/v1/temporal-codec/decode", json=_wire([foreign]), headers=OP)
    assert r.status_code == 422 and "not in the keyset" in r.json()["message"], r.text
    for content in (b"not json", b'{"payloads": 3}', b'[1, 2]', b'{"payloads": [{"metadata": {"encoding": 5}}]}'):
        r = await codec_api.post("/api/v1/temporal-codec/decode", content=content,
                                 headers={**OP, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", (content, r.text)


async def test_the_codec_endpoint_answers_the_ui_preflight_and_its_origin_only(codec_api):
    preflight = {"Origin": UI, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-namespace"}
    r = await codec_api.options("/api/v1/temporal-codec/decode", headers=preflight)
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == UI
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert {"content-type", "x-namespace"} <= {h.strip().lower() for h in
                                              r.headers["access-control-allow-headers"].split(",")}
    r = await codec_api.options("/api/v1/temporal-codec/decode", headers={**preflight, "Origin": "http://127.0.0.1:8233"})
    assert r.status_code == 204
    evil = {**preflight, "Origin": "https://evil.example"}
    r = await codec_api.options("/api/v1/temporal-codec/decode", headers=evil)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = await codec_api.post("/api/v1/temporal-codec/decode", json={"payloads": []},
                             headers={**OP, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = await codec_api.post("/api/v1/temporal-codec/decode", json={"payloads": []}, headers={**OP, "Origin": UI})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI


def test_the_ui_origins_are_configurable():
    from api.codec import allowed_origins

    compose = Settings(codec_cors_origins="http://localhost:8080, https://temporal.example.com/")
    assert allowed_origins(compose) == {"http://localhost:8080", "https://temporal.example.com"}
    assert allowed_origins(Settings(temporal_ui_port=9000)) == {"http://localhost:9000", "http://127.0.0.1:9000"}


async def test_the_ui_session_cookie_comes_from_the_login_form(codec_api, payload_keyset):
    [sealed] = await codec.EncryptionCodec.from_keyset(json.loads(payload_keyset)).encode([_payload()])
    r = await codec_api.get("/api/v1/temporal-codec/login")
    assert r.status_code == 200 and "<form" in r.text
    r = await codec_api.post("/api/v1/temporal-codec/login", data={"token": "wrong"})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED" and COOKIE not in r.cookies
    r = await codec_api.post("/api/v1/temporal-codec/login", data={"token": OPERATOR})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/api/v1/temporal-codec" in cookie
    session = r.cookies[COOKIE]
    assert OPERATOR not in session
    ui = {"Origin": UI, "X-Namespace": "default"}
    r = await codec_api.post("/api/v1/temporal-codec/decode", json=_wire([sealed]), headers=ui)  # the jar's
    assert r.status_code == 200 and _unwire(r.json()) == [_payload()], r.text
    expired = _session_value(OPERATOR, int(time.time()) - 1)
    forged = f"{int(time.time()) + 3600}.{'0' * 64}"
    other_token = _session_value("another-token", int(time.time()) + 3600)
    for bad in (expired, forged, other_token, "garbage"):
        codec_api.cookies.clear()
        r = await codec_api.post("/api/v1/temporal-codec/decode", json=_wire([sealed]),
                                 headers={**ui, "Cookie": f"{COOKIE}={bad}"})
        assert r.status_code == 401, (bad, r.text)


async def test_without_an_operator_token_the_codec_endpoint_is_off(client):
    for method, path in (("POST", "decode"), ("OPTIONS", "decode"), ("POST", "encode"), ("GET", "login")):
        r = await client.request(method, f"/api/v1/temporal-codec/{path}", json={"payloads": []},
                                 headers={"Authorization": "Bearer ", "Origin": UI})
        assert r.status_code == 404, (method, path, r.text)


def test_the_embedded_ui_decodes_through_the_api(tmp_path):
    """``dataapi dev`` points its Temporal UI at the codec endpoint and makes the operator token (mode 0600)."""
    settings = Settings(var_dir=tmp_path / "var", api_port=3100)
    command = temporal_command(settings)
    i = command.index("--ui-codec-endpoint")
    assert command[i + 1] == "http://localhost:3100/api/v1/temporal-codec"
    token_file = codec.codec_token_path(settings)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token_file.read_text()) >= 32
    assert codec.codec_token(settings) == token_file.read_text().strip()
    temporal_command(settings)
    assert codec.codec_token(settings) == token_file.read_text().strip()  # made once
    assert codec.codec_token(Settings(var_dir=tmp_path / "elsewhere", codec_token="")) is None


async def test_the_temporal_cli_decodes_a_history_through_the_codec_endpoint(tenant, stack_settings, temporal_env):
    """The codec server protocol as Temporal's own tools speak it: ``temporal workflow show --codec-endpoint``
    against the API over real HTTP shows the SQL with the operator token (without a codec, ciphertext; a wrong
    token is refused above)."""
    import socket

    import uvicorn

    from cli.dev import temporal_binary

    token = await tenant.token()
    r = await execute(tenant.client, token, "default/segredo", {"valor": VALUE_MARK})
    assert r.status_code == 200, r.text
    [job_id] = _job_ids(tenant)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = stack_settings.model_copy(update={"codec_token": OPERATOR})
    engine = make_engine(settings.resolved_database_url)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())

    async def show(*extra: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            temporal_binary(), "workflow", "show", "--workflow-id", job_id, "--output", "json",
            "--address", stack_settings.temporal_address, *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode() + err.decode()
        # Payload data and metadata are base64 in the JSON output: read them as the operator would see them.
        return text + "".join(base64.b64decode(v).decode(errors="replace")
                              for v in re.findall(r'"([A-Za-z0-9+/]{8,}={0,2})"', text) if len(v) % 4 == 0)

    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}/api/v1/temporal-codec"
        blind = await show()
        assert "binary/encrypted" in blind
        assert SQL_MARK not in blind and VALUE_MARK not in blind
        decoded = await show("--codec-endpoint", endpoint, "--codec-auth", f"Bearer {OPERATOR}")
        assert SQL_MARK in decoded and VALUE_MARK in decoded, decoded[:2000]
    finally:
        server.should_exit = True
        await serving
        engine.dispose()
