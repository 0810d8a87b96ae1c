"""The client's calls without I/O, shared by the sync and the asyncio flavours.

A call is a generator: it yields the ``Request``s it sends and the ``Pause``s it takes, receives each request's
outcome (the ``httpx.Response``, or the ``httpx.TransportError`` that stopped it) and returns the call's value.
``Client`` and ``AsyncClient`` drive it (``_run``) with their own transport and sleep; the request shapes, the
client's own retries and the reading of answers live here once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from dataapi.client._core import (
    JOBS_PREFIX,
    LOGIN_PATH,
    REFRESH_PATH,
    Backoff,
    FileArg,
    JobState,
    QueryResult,
    Tokens,
    check,
    endpoint_path,
    execute_body,
    file_part,
    job_path,
    repository_job_failed,
    run_form,
    transient_retry_after,
)
from dataapi.client.errors import JobTimeoutError, error_from_response, parse_retry_after

T = TypeVar("T")
CATALOG_PATH, OPENAPI_PATH = "/api/v1/data-api/endpoints", "/api/v1/data-api/openapi.json"
Outcome = httpx.Response | httpx.TransportError

# ``format=`` names and the media types the server answers (README "Results: formats, compression, paging").
FORMATS = {"json": "application/json", "csv": "text/csv", "ndjson": "application/x-ndjson",
           "parquet": "application/vnd.apache.parquet", "arrow": "application/vnd.apache.arrow.stream"}


@dataclass
class Request:
    """One HTTP request of a call. ``authenticated``: sent with the bearer token (the Jobs API carries its own
    headers instead); ``replayable``: safe to send again when its answer was lost or a 502/503/504 (a GET, a
    DELETE, a POST with an ``Idempotency-Key``)."""

    method: str
    path: str
    params: dict | None = None
    json: Any = None
    headers: dict = field(default_factory=dict)
    data: dict | None = None
    files: dict | None = None
    authenticated: bool = True
    replayable: bool = False

    def kwargs(self) -> dict:
        """The arguments of ``httpx.Client.request`` (but the method and the path). A file part sent again is
        read from its beginning again (httpx seeks it)."""
        out: dict = {"params": self.params, "headers": self.headers, "data": self.data, "files": self.files}
        if self.json is not None:
            out["json"] = self.json
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Pause:
    seconds: float


Call = Generator[Request | Pause, Outcome | None, T]


@dataclass(frozen=True)
class Retry:
    """The client's own retries of one request: up to ``attempts`` more sends after a 429 (its refused request
    did not count), a connection that never opened, and, for a replayable request, a lost answer or a
    502/503/504. Each waits the answer's ``Retry-After``, else ``backoff`` seconds doubling per attempt; an
    answer asking for more than ``max_wait`` seconds is raised rather than waited for. ``attempts=0`` (the
    default): every answer is the caller's."""

    attempts: int = 0
    backoff: float = 0.5
    max_wait: float = 60.0

    def pause(self, request: Request, outcome: Outcome, attempt: int) -> float | None:
        """Seconds to wait before sending ``request`` again, or None to give ``outcome`` to the caller."""
        if attempt >= self.attempts:
            return None
        fallback = self.backoff * 2 ** attempt
        if isinstance(outcome, httpx.TransportError):
            never_sent = isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout)
            return fallback if never_sent or request.replayable else None
        if outcome.status_code == 429 or (outcome.status_code in (502, 503, 504) and request.replayable):
            asked = parse_retry_after(outcome.headers.get("retry-after"))
            wait = fallback if asked is None else asked
            return wait if wait <= self.max_wait else None
        return None


def send(request: Request, retry: Retry) -> Call[httpx.Response]:
    """Sends ``request`` (again, as ``retry`` allows) and returns its response, or raises its transport error."""
    attempt = 0
    while True:
        outcome = yield request
        assert outcome is not None
        wait = retry.pause(request, outcome, attempt)
        if wait is None:
            if isinstance(outcome, httpx.TransportError):
                raise outcome
            return outcome
        attempt += 1
        yield Pause(wait)


def call(request: Request, retry: Retry, read: Callable[[httpx.Response], T]) -> Call[T]:
    """Sends ``request`` and returns what ``read`` makes of the response."""
    return read((yield from send(request, retry)))


def json_of(*ok: int) -> Callable[[httpx.Response], Any]:
    return lambda r: check(r, *ok).json()


# --- tokens ---------------------------------------------------------------------------------------------------

def login(company: str, api_key: str, api_secret: str, retry: Retry) -> Call[Tokens]:
    """``POST /api/v1/auth/api-key``: the key exchanged for a token pair."""
    sent = time.monotonic()
    body = {"company_slug": company, "api_key": api_key, "api_secret": api_secret}
    r = yield from send(Request("POST", LOGIN_PATH, json=body, authenticated=False), retry)
    return Tokens.from_pair(check(r, 200).json(), sent)


def renew(old: Tokens | None, company: str, api_key: str, api_secret: str, retry: Retry) -> Call[Tokens]:
    """A new token pair: with the refresh token while it lasts, else (or when it is refused) a new login."""
    if old is not None and old.refreshable():
        sent = time.monotonic()
        # Never sent again by the client: a refresh token is single-use.
        r = yield from send(Request("POST", REFRESH_PATH, json={"refresh_token": old.refresh},
                                    authenticated=False), Retry())
        if r.status_code == 200:
            return Tokens.from_pair(r.json(), sent)
        if r.status_code != 401:  # 401: the refresh token is spent or revoked: log in again
            raise error_from_response(r)
    return (yield from login(company, api_key, api_secret, retry))


# --- polling -------------------------------------------------------------------------------------------------

def refresh(job: JobState) -> Call[JobState]:
    """Reads the job again; a 429, 502, 503 or 504 leaves it as it was, and any ``Retry-After`` sets the next
    pause of ``wait()``."""
    if job.polling_url is None:  # a sync endpoint answered at once: nothing to poll
        return job
    r = yield from send(Request("GET", job.polling_url), Retry())
    transient, job.retry_after = transient_retry_after(r)
    if not transient:
        job.update(check(r, 200).json())
    return job


def wait(job: JobState, timeout: float | None, poll_interval: float, max_poll_interval: float) -> Call[QueryResult]:
    """Polls until the job ends: its result, JobFailedError, or JobTimeoutError after ``timeout`` seconds."""
    backoff = Backoff(poll_interval, max_poll_interval, timeout)
    while not job.done:
        if backoff.remaining() <= 0:
            raise JobTimeoutError(f"job {job.job_id} still {job.status} after {timeout:g}s", job=job)
        yield Pause(backoff.next_pause(job.retry_after))
        yield from refresh(job)
    return job.outcome()


def wait_run(job_id: str, headers: dict, timeout: float | None, poll_interval: float,
             max_poll_interval: float) -> Call[dict]:
    """Polls a Jobs API run until it ends: its description when completed, JobFailedError when it failed."""
    backoff = Backoff(poll_interval, max_poll_interval, timeout)
    while True:
        r = yield from send(Request("GET", job_path(job_id), headers=headers, authenticated=False), Retry())
        transient, retry_after = transient_retry_after(r)
        if not transient:
            status = check(r, 200).json()
            if status.get("status") == "completed":
                return status
            if status.get("status") != "processing":
                raise repository_job_failed(status)
        if backoff.remaining() <= 0:
            raise JobTimeoutError(f"job {job_id} still running after {timeout:g}s")
        yield Pause(backoff.next_pause(retry_after))


def jobs_api_get(path: str, headers: dict) -> Request:
    return Request("GET", path, headers=headers, authenticated=False, replayable=True)


# --- request shapes ------------------------------------------------------------------------------------------

def idempotency_headers(key: str | bool | None) -> dict:
    """``Idempotency-Key`` of one call: the caller's key, a new random one for ``True``, none for None/False.
    Made once per call, so that the client's own retries send the same key."""
    if key is None or key is False:
        return {}
    return {"Idempotency-Key": uuid.uuid4().hex if key is True else str(key)}


def accept(format: str | None) -> str | None:  # noqa: A002 (the API's own name)
    if format is None:
        return None
    try:
        return FORMATS[format]
    except KeyError:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}") from None


def execute_request(endpoint: str, params: dict | None, *, callback_url: str | None = None,
                    idempotency_key: str | bool | None = None, wait_async: float | None = None,
                    format: str | None = None) -> Request:  # noqa: A002
    """``POST .../execute``; ``wait_async`` is ``Prefer: respond-async, wait=N`` (a sync endpoint may then
    answer 202 with a job), ``format`` the ``Accept`` of a sync answer."""
    headers = idempotency_headers(idempotency_key)
    if wait_async is not None:
        if wait_async < 0:
            raise ValueError("wait_async must be >= 0 seconds")
        headers["Prefer"] = f"respond-async, wait={wait_async:g}"
    media = accept(format)
    if media is not None:
        headers["Accept"] = media
    return Request("POST", f"{endpoint_path(endpoint)}/execute", json=execute_body(params or {}, callback_url),
                   headers=headers, replayable="Idempotency-Key" in headers)


def job_url(endpoint: str, job_id: str, tail: str = "") -> str:
    return f"{endpoint_path(endpoint)}/jobs/{quote(str(job_id), safe='')}{tail}"


def result_request(endpoint: str, job_id: str, format: str | None = None,  # noqa: A002
                   offset: int | None = None, limit: int | None = None) -> Request:
    """``GET .../jobs/{job_id}/result`` in ``format`` (json, csv, ndjson, parquet, arrow), rows from ``offset``
    for ``limit``."""
    params: dict[str, Any] = {}
    if format is not None:
        accept(format)
        params["format"] = format
    if offset is not None:
        params["offset"] = offset
    if limit is not None:
        params["limit"] = limit
    return Request("GET", job_url(endpoint, job_id, "/result"), params=params or None, replayable=True)


def jobs_request(endpoint: str, status: str | None = None, since: str | None = None, until: str | None = None,
                 cursor: str | None = None, limit: int | None = None) -> Request:
    """``GET .../{ns}/{slug}/jobs``: the caller's jobs of the endpoint, newest first (``since``/``until`` are
    the API's ``from``/``to``: ISO 8601 creation times)."""
    query = {"status": status, "from": since, "to": until, "cursor": cursor, "limit": limit}
    params = {k: v for k, v in query.items() if v is not None}
    return Request("GET", f"{endpoint_path(endpoint)}/jobs", params=params or None, replayable=True)


def get(path: str) -> Request:
    return Request("GET", path, replayable=True)


def delete(path: str) -> Request:
    return Request("DELETE", path, replayable=True)


def run_request(headers: dict, file: FileArg | None, params: dict | None, metadata: dict | None,
                idempotency_key: str | bool | None, closing: list) -> Request:
    """The Jobs API's ``POST /api/v1/job/execute`` (multipart); files opened here are appended to ``closing``."""
    key = idempotency_headers(idempotency_key)
    files = {"file": file_part(file, closing)} if file is not None else None
    return Request("POST", f"{JOBS_PREFIX}/execute", headers={**headers, **key}, data=run_form(params, metadata),
                   files=files, authenticated=False, replayable=bool(key))


# --- answers -------------------------------------------------------------------------------------------------

@dataclass
class ResultPage:
    """A JSON page of a job's stored result (``.../result?offset=&limit=``): its rows and where the next starts."""

    rows: list[dict]
    columns: list[dict] | None
    row_count: int
    offset: int
    total_row_count: int | None
    next: str | None
    raw: dict = field(default_factory=dict, repr=False)

    def following(self) -> int | None:
        """The offset of the next page, None on the last."""
        return self.offset + self.row_count if self.next and self.row_count else None

    @classmethod
    def from_body(cls, body: dict) -> ResultPage:
        rows = body.get("rows") or []
        return cls(rows=rows, columns=body.get("columns"), row_count=body.get("row_count", len(rows)),
                   offset=body.get("offset", 0), total_row_count=body.get("total_row_count"),
                   next=body.get("next"), raw=body)


def content(response: httpx.Response) -> bytes:
    return check(response, 200).content


def executed(response: httpx.Response) -> QueryResult | dict:
    """An execute's answer: the rows of a 200, or the job body of a 202."""
    if check(response, 200, 202).status_code == 200:
        return QueryResult.from_response(response)
    return response.json()


def submitted(response: httpx.Response) -> dict:
    """An execute's answer as a job body: a 202's, or a finished job without id holding a 200's rows."""
    if check(response, 200, 202).status_code == 200:
        return {"job_id": None, "status": "completed", "result": response.json()}
    return response.json()


def run_job_id(response: httpx.Response) -> str:
    return check(response, 201).json()["job_id"]


def result_page(response: httpx.Response) -> ResultPage:
    return ResultPage.from_body(check(response, 200).json())


def jobs_page(response: httpx.Response) -> tuple[list[dict], str | None]:
    body = check(response, 200).json()
    return body.get("jobs") or [], body.get("next_cursor")


def cancelled(response: httpx.Response) -> dict | None:
    """A DELETE's answer: the cancelled job's body (200), or None when a finished job was deleted (204)."""
    check(response, 200, 204)
    return response.json() if response.status_code == 200 else None
