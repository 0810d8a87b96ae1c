"""The harness's load generator (bench/wire.py, bench/load.py) against a real uvicorn: it reads whole bodies
with either framing, keeps connections alive and reconnects when the server closes them, sends every side the
same requests, counts failures instead of timing them, and never waits forever on a broken response."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench import load, wire

SEEN: list[tuple[str, int, dict]] = []  # (path, client port, body) of every request the app answered


async def query(request: Request) -> Response:
    body = await request.json()
    SEEN.append((request.url.path, request.client.port, body))
    if request.path_params["name"] == "fail":
        return JSONResponse({"error": "no"}, status_code=500)
    return JSONResponse({"rows": [body["parameter_values"]], "port": request.client.port})


async def stream(request: Request) -> Response:
    async def parts():
        for i in range(50):
            yield (json.dumps({"i": i}) + "\n").encode() * 200  # ~2 KB chunks, 50 of them
    return StreamingResponse(parts(), media_type="application/x-ndjson")


async def closing(request: Request) -> Response:
    return JSONResponse({"port": request.client.port}, headers={"Connection": "close"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base():
    app = Starlette(routes=[Route("/query/{name}", query, methods=["POST"]), Route("/stream", stream),
                            Route("/close", closing)])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _bare(base: str) -> load.Target:
    return load.bare(base)


def test_keep_alive_reuses_one_connection_and_reads_the_whole_body(base):
    async def run():
        conn = wire.Connection.to(base)
        ports = []
        for i in range(5):
            raw = wire.request_bytes("POST", f"{base}/query/x", json_body={"parameter_values": {"i": i}})
            reply = await conn.send(raw)
            assert reply.status == 200 and reply.json()["rows"] == [{"i": i}]
            ports.append(reply.json()["port"])
        streamed = await conn.send(wire.request_bytes("GET", f"{base}/stream"))
        conn.close()
        return ports, streamed

    ports, streamed = asyncio.run(run())
    assert len(set(ports)) == 1  # one connection for all five
    lines = streamed.body.decode().splitlines()
    assert streamed.status == 200 and len(lines) == 50 * 200 and json.loads(lines[-1]) == {"i": 49}


def test_a_server_that_closes_the_connection_gets_a_new_one(base):
    async def run():
        conn = wire.Connection.to(base)
        first = (await conn.send(wire.request_bytes("GET", f"{base}/close"))).json()["port"]
        second = (await conn.send(wire.request_bytes("GET", f"{base}/close"))).json()["port"]
        conn.close()
        return first, second

    first, second = asyncio.run(run())
    assert first != second


def test_every_side_gets_the_same_requests_and_failures_are_counted_not_timed(base):
    SEEN.clear()
    a, b = _bare(base), _bare(base)
    b.name = "other"
    params = [{"id": i} for i in range(6)]

    ledger = load.CpuLedger({"harness": os.getpid()})  # the server runs in this process too
    spent = {}

    async def run():
        cpu = time.process_time()
        lat = await load.latency_rounds([a, b], "x", params, rounds=2, per_round=3, ledger=ledger)
        thr = await load.throughput_rounds([a, b], "x", params, rounds=1, concurrency=4, seconds=0.3, ledger=ledger)
        spent["total"] = time.process_time() - cpu
        failing = await load.throughput_rounds([_bare(base)], "fail", params, rounds=1, concurrency=2, seconds=0.2)
        with pytest.raises(load.RequestFailed, match="HTTP 500"):
            await load.latency_rounds([_bare(base)], "fail", params, rounds=1, per_round=1)
        return lat, thr, failing

    lat, thr, failing = asyncio.run(run())
    assert lat["bare"]["n"] == lat["other"]["n"] == 6
    timed = [body["parameter_values"] for path, _, body in SEEN[:12]]
    assert sorted(map(str, timed)) == sorted(map(str, params + params))  # each side got each parameter set once
    for side in ("bare", "other"):
        assert thr[side]["requests"] > 4 and thr[side]["errors"] == 0 and thr[side]["req_per_s"] > 0
        assert 0 < thr[side]["harness_cpu_ms_per_request"] < 50
    # The ledger charged each side its own windows: every answer counted once, no CPU counted twice.
    assert ledger.answered == {side: 6 + thr[side]["requests"] for side in ("bare", "other")}
    charged = [ledger.spent[side]["harness"] for side in ("bare", "other")]
    assert all(c > 0 for c in charged) and sum(charged) <= spent["total"] + 0.02  # clock ticks round up
    per = ledger.per_answer_ms({"other": ("harness",)})
    assert per["other"]["requests"] == ledger.answered["other"] and per["other"]["total"] == per["other"]["harness"]
    fails = failing["bare"]
    assert fails["requests"] == 0 and fails["errors"] > 0 and "HTTP 500" in fails["first_error"]


def test_a_response_cut_short_is_an_error_not_a_hang():
    async def run():
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = wire.Connection("127.0.0.1", port)
        try:
            with pytest.raises(wire.WireError, match="connection lost"):
                await asyncio.wait_for(conn.send(wire.request_bytes("GET", f"http://127.0.0.1:{port}/")), 5)
        finally:
            server.close()

    asyncio.run(run())


def test_requests_are_complete_http():
    raw = wire.request_bytes("POST", "http://h:1/a/b", headers={"Authorization": "Bearer t"},
                             json_body={"parameter_values": {"x": "é"}})
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /a/b HTTP/1.1" and "Host: h:1" in lines and "Authorization: Bearer t" in lines
    assert f"Content-Length: {len(body)}" in lines and json.loads(body) == {"parameter_values": {"x": "é"}}
    get = wire.request_bytes("GET", "http://h:1/d.json", query={"id": 3, "_shape": "objects"})
    assert get.startswith(b"GET /d.json?id=3&_shape=objects HTTP/1.1\r\n") and b"Content-Length" not in get
