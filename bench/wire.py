"""The harness's load generator: HTTP/1.1 over keep-alive connections with the requests built before they are
timed, and a response parser that only finds where the body ends.

Why not httpx: the load generator shares the CPUs with what it measures, and httpx spends about 1 ms of CPU per
request in the harness process. That capped a bare handler's point lookups at a third of what wrk (C) measures
and took more CPU from the side answering more requests per second, lifting our throughput ratios. Here a
request costs the harness tens of microseconds, and the ratios agree with wrk's within the rounds' spread; the
harness still records its own CPU per request, so what is left of the effect is printed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


class WireError(Exception):
    """The connection failed or the response was not HTTP/1.1 we can read."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


def request_bytes(method: str, url: str, *, headers: dict[str, str] | None = None, json_body=None,
                  query: dict | None = None) -> bytes:
    """One complete HTTP/1.1 request (keep-alive); ``url`` is absolute (its host goes in ``Host``)."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if query:
        target += "?" + urlencode(query)
    body = b"" if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: */*"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if json_body is not None:
        lines.append("Content-Type: application/json")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                reply = _parse(self.buffer)
            except WireError as e:
                self.waiter.set_exception(e)
                return
            if reply is not None:
                self.waiter.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.lost = exc or WireError("connection closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(WireError(f"connection lost: {self.lost}"))


def _parse(buf: bytearray) -> tuple[Reply, bool] | None:
    """(reply, keep_alive) once ``buf`` holds a whole response (consumed from it), else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status_line = head[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise WireError(f"not an HTTP/1.x response: {head[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    keep_alive = fields.get("connection", "").lower() != "close" and status_line[0] == "HTTP/1.1"
    start = end + 4
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body, used = _chunks(buf, start)
        if body is None:
            return None
    elif "content-length" in fields:
        length = int(fields["content-length"])
        if len(buf) < start + length:
            return None
        body, used = bytes(buf[start:start + length]), start + length
    else:  # no framing: the body runs to the end of the connection, which we do not use
        raise WireError("a response with neither Content-Length nor chunked framing")
    del buf[:used]
    return Reply(int(status_line[1]), body), keep_alive


def _chunks(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, 0
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)  # no trailers expected: the empty line ends the body
            if trailer_end < 0:
                return None, 0
            return bytes(out), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None, 0
        out += buf[pos:pos + size]
        pos += size + 2


class Connection:
    """One keep-alive connection, one request at a time; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._proto: _Protocol | None = None

    @classmethod
    def to(cls, base_url: str) -> Connection:
        parts = urlsplit(base_url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    async def open(self) -> None:
        if self._proto is None or self._proto.lost is not None:
            loop = asyncio.get_running_loop()
            _, self._proto = await loop.create_connection(_Protocol, self.host, self.port)

    async def send(self, raw: bytes) -> Reply:
        """Sends a request built by ``request_bytes`` and returns the whole response."""
        await self.open()
        proto = self._proto
        if proto.buffer:
            raise WireError("bytes from the server before the request was sent")
        proto.waiter = asyncio.get_running_loop().create_future()
        proto.transport.write(raw)
        try:
            reply, keep_alive = await proto.waiter
        except BaseException:
            self.close()
            raise
        finally:
            proto.waiter = None
        if not keep_alive:
            self.close()
        return reply

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
