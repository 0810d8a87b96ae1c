"""The blocking client: one ``httpx.Client``, safe to share between threads."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx

from dataapi.client import _core, _ops
from dataapi.client._core import JobState, QueryResult, Tokens, check
from dataapi.client._ops import ResultPage
from dataapi.client.errors import error_from_response

T = TypeVar("T")


class Job(JobState):
    """An async execution of an endpoint. ``refresh()`` reads its state again; ``wait()`` polls until it ends."""

    def __init__(self, client: Client, endpoint: str, body: dict):
        super().__init__(job_id=body.get("job_id"), status=body.get("status", "processing"),
                         polling_url=body.get("polling_url"))
        self._client, self.endpoint = client, endpoint
        self.update(body)  # a 202's body, a job's, or a job list's entry
        if self.polling_url is None and self.job_id is not None:
            self.polling_url = f"{_core.endpoint_path(endpoint)}/jobs/{self.job_id}"

    def refresh(self) -> Job:
        """Reads the job again (a 429 or 503 on the way leaves it as it was and sets the next pause)."""
        self._client._run(_ops.refresh(self))
        return self

    def wait(self, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT, poll_interval: float = 0.5,
             max_poll_interval: float = 10.0) -> QueryResult:
        """Polls until the job ends: its result, or JobFailedError; JobTimeoutError after ``timeout`` seconds
        (None: no limit). Pauses start at ``poll_interval`` and double up to ``max_poll_interval``; a
        ``Retry-After`` from the server sets the next one."""
        return self._client._run(_ops.wait(self, timeout, poll_interval, max_poll_interval))

    # --- the stored result (``GET .../jobs/{job_id}/result``) and the job's end ---

    def fetch_result(self, format: str | None = None, offset: int | None = None,  # noqa: A002
                     limit: int | None = None) -> bytes:
        """The completed job's stored rows as the server encodes them in ``format`` (json, csv, ndjson,
        parquet, arrow; json when None), from row ``offset`` for ``limit`` rows (all when None).
        JobNotFinishedError while it runs, JobFailedError when it failed, ResultExpiredError past retention."""
        request = _ops.result_request(self.endpoint, self.stored_id(), format, offset, limit)
        return self._client._run(_ops.call(request, self._client._retry, _ops.content))

    def page(self, offset: int = 0, limit: int | None = None) -> ResultPage:
        """One JSON page of the stored rows: ``rows``, ``offset``, ``total_row_count`` and the ``next`` link."""
        request = _ops.result_request(self.endpoint, self.stored_id(), None, offset, limit)
        return self._client._run(_ops.call(request, self._client._retry, _ops.result_page))

    def pages(self, limit: int = 10_000) -> Iterator[ResultPage]:
        """Every stored row, ``limit`` rows a page, until the server gives no ``next`` link."""
        offset: int | None = 0
        while offset is not None:
            page = self.page(offset, limit)
            yield page
            offset = page.following()

    def iter_result(self, format: str | None = None, offset: int | None = None,  # noqa: A002
                    limit: int | None = None) -> Iterator[bytes]:
        """As ``fetch_result()``, as chunks while they arrive (memory does not grow with the result)."""
        request = _ops.result_request(self.endpoint, self.stored_id(), format, offset, limit)
        with self._client._stream(request) as r:
            yield from r.iter_bytes()

    def save_result(self, path: str | os.PathLike, format: str | None = None,  # noqa: A002
                    offset: int | None = None, limit: int | None = None) -> Path:
        """Writes ``fetch_result()`` to ``path`` as it arrives (a ``.part`` file renamed when complete)."""
        target = Path(path)
        with _core.partial_file(target) as out:
            for chunk in self.iter_result(format, offset, limit):
                out.write(chunk)
        return target

    def cancel(self) -> Job:
        """``DELETE`` the job: a running one is cancelled (it then reads ``failed``, ``Cancelled by caller``);
        a finished one is deleted with its stored result (``deleted`` becomes True; reading it is then 404)."""
        self.cancelled(self._client.cancel_job(self.endpoint, self.stored_id()))
        return self


class Client:
    """The Data API and the Jobs API with one company's API key.

    The key and secret are exchanged for tokens on first use; the access token is renewed (refresh token,
    else a new login) before it expires and once more when the server refuses it. ``username``,
    ``application_id`` and ``client_id`` are the Jobs API's headers: ``username`` is the key's user, read from
    the login when not given. ``retries`` is how many times the client sends a request again by itself
    (``_ops.Retry``: after a 429, waiting its ``Retry-After`` up to ``max_retry_wait`` seconds; after a lost
    connection or a 502/503/504 when the request is safe to repeat); 0, the default, leaves every answer to the
    caller."""

    def __init__(self, base_url: str, company: str, api_key: str, api_secret: str, *,
                 timeout: float | httpx.Timeout | None = _core.DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, username: str | None = None,
                 application_id: str = _core.DEFAULT_APPLICATION_ID, client_id: str = _core.DEFAULT_CLIENT_ID,
                 headers: dict | None = None, retries: int = 0, max_retry_wait: float = 60.0):
        self.base_url, self.company = base_url.rstrip("/"), company
        self._retry = _ops.Retry(retries, max_wait=max_retry_wait)
        self._key, self._secret = api_key, api_secret
        self.username, self.application_id, self.client_id = username, application_id, client_id
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"User-Agent": _core.USER_AGENT, **(headers or {})})
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()

    # --- lifecycle ---

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- tokens ---

    def _renew(self, old: Tokens | None) -> Tokens:
        return self._run(_ops.renew(old, self.company, self._key, self._secret, self._retry))

    def _token(self) -> Tokens:
        tokens = self._tokens
        if tokens is not None and tokens.fresh():
            return tokens
        with self._lock:  # one renewal at a time: a refresh token is single-use
            if self._tokens is None or not self._tokens.fresh():
                self._tokens = self._renew(self._tokens)
            return self._tokens

    def _send(self, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        """A request with the bearer token; on a 401 the token is renewed and the request sent once more."""
        for attempt in (1, 2):
            tokens = self._token()
            r = self._http.request(method, path, headers=_core.bearer(tokens, headers), **kwargs)
            if r.status_code != 401 or attempt == 2:
                return r
            self._refused(tokens)
        raise AssertionError("unreachable")

    def _refused(self, tokens: Tokens) -> None:
        with self._lock:
            if self._tokens is tokens:
                tokens.expire()

    def _run(self, call: _ops.Call[T]) -> T:
        """Drives one of ``_ops``' calls: sends its requests, sleeps its pauses, returns its value."""
        outcome: _ops.Outcome | None = None
        try:
            while True:
                step = call.send(outcome)
                if isinstance(step, _ops.Pause):
                    time.sleep(step.seconds)
                    outcome = None
                    continue
                try:
                    if step.authenticated:
                        outcome = self._send(step.method, step.path, **step.kwargs())
                    else:
                        outcome = self._http.request(step.method, step.path, **step.kwargs())
                except httpx.TransportError as exc:
                    outcome = exc
        except StopIteration as stop:
            return stop.value

    @contextlib.contextmanager
    def _stream(self, request: _ops.Request) -> Iterator[httpx.Response]:
        """A streamed authenticated GET whose status is 2xx (else its typed error), renewed once after a 401."""
        for attempt in (1, 2):
            tokens = self._token()
            with self._http.stream(request.method, request.path, params=request.params,
                                   headers=_core.bearer(tokens, request.headers)) as r:
                if r.status_code == 401 and attempt == 1:
                    self._refused(tokens)
                    continue
                if not r.is_success:
                    r.read()
                    raise error_from_response(r)
                yield r
                return

    def login(self) -> dict:
        """Exchanges the key now (it is otherwise done on first use) and returns the ``user`` the server
        describes (name, policies, actions)."""
        return self._token().user

    # --- Data API ---

    @overload
    def execute(self, endpoint: str, /, *, idempotency_key: str | bool | None = None, wait_async: None = None,
                **params: Any) -> QueryResult: ...

    @overload
    def execute(self, endpoint: str, /, *, idempotency_key: str | bool | None = None, wait_async: float,
                **params: Any) -> QueryResult | Job: ...

    def execute(self, endpoint: str, /, *, idempotency_key: str | bool | None = None,
                wait_async: float | None = None, **params: Any) -> QueryResult | Job:
        """Runs ``"namespace/slug"`` with ``params`` and returns its rows (a QueryResult). An async endpoint's
        job is waited for (``Job.wait()``'s defaults); use ``submit()`` to control that. ``wait_async=N`` asks
        a sync endpoint to go on as a job after N seconds (``Prefer: respond-async, wait=N``): the answer is then
        the rows, or the Job when the query outlasted N. ``idempotency_key``: a key (``True``: a new random one)
        that makes a repeated call, and the client's own retries, answer with the first call's job."""
        request = _ops.execute_request(endpoint, params, idempotency_key=idempotency_key, wait_async=wait_async)
        r = self._run(_ops.call(request, self._retry, _ops.executed))
        if isinstance(r, QueryResult):
            return r
        job = Job(self, endpoint, r)
        return job if wait_async is not None else job.wait()

    def export(self, endpoint: str, params: dict | None = None, *, format: str = "csv",  # noqa: A002
               idempotency_key: str | bool | None = None,
               timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT) -> bytes:
        """Runs ``"namespace/slug"`` and returns its rows encoded in ``format`` (csv, ndjson, parquet, arrow,
        json): a sync endpoint's answer (its first ``max_rows`` rows), or an async job's whole stored result
        once it completes (waited for up to ``timeout`` seconds)."""
        request = _ops.execute_request(endpoint, params, idempotency_key=idempotency_key, format=format)
        r = self._run(_ops.send(request, self._retry))
        if check(r, 200, 202).status_code == 200:
            return r.content
        job = Job(self, endpoint, r.json())
        job.wait(timeout=timeout)
        return job.fetch_result(format)

    def submit(self, endpoint: str, params: dict | None = None, callback_url: str | None = None, *,
               idempotency_key: str | bool | None = None, wait_async: float | None = None) -> Job:
        """Starts ``"namespace/slug"`` and returns its Job. On a sync endpoint the answer is already there:
        the Job is completed (no ``job_id``), unless ``wait_async`` let it go on as a job."""
        request = _ops.execute_request(endpoint, params, callback_url=callback_url, idempotency_key=idempotency_key,
                                       wait_async=wait_async)
        return Job(self, endpoint, self._run(_ops.call(request, self._retry, _ops.submitted)))

    def get_job(self, endpoint: str, job_id: str) -> Job:
        """The job ``job_id`` of ``"namespace/slug"`` as the server sees it now."""
        body = self._run(_ops.call(_ops.get(_ops.job_url(endpoint, job_id)), self._retry, _ops.json_of(200)))
        return Job(self, endpoint, body)

    def jobs(self, endpoint: str, *, status: str | None = None, since: str | None = None,
             until: str | None = None, page_size: int | None = None) -> Iterator[Job]:
        """The caller's jobs of ``"namespace/slug"``, newest first, page after page (``status``: processing,
        completed or failed; ``since``/``until``: ISO 8601 creation times, inclusive). Each Job holds the
        list's fields (no rows: ``refresh()`` reads them)."""
        cursor: str | None = None
        while True:
            request = _ops.jobs_request(endpoint, status, since, until, cursor, page_size)
            entries, cursor = self._run(_ops.call(request, self._retry, _ops.jobs_page))
            for entry in entries:
                yield Job(self, endpoint, entry)
            if not cursor:
                return

    def cancel_job(self, endpoint: str, job_id: str) -> dict | None:
        """``DELETE .../jobs/{job_id}``: the cancelled job's body, or None when a finished job was deleted."""
        return self._run(_ops.call(_ops.delete(_ops.job_url(endpoint, job_id)), self._retry, _ops.cancelled))

    def catalog(self) -> list[dict]:
        """The endpoints this key may execute, with their parameters (``GET /api/v1/data-api/endpoints``)."""
        return self._run(_ops.call(_ops.get(_ops.CATALOG_PATH), self._retry, _ops.json_of(200)))

    def endpoint(self, endpoint: str) -> dict:
        """One endpoint's catalog entry, with its result's ``columns``."""
        return self._run(_ops.call(_ops.get(_core.endpoint_path(endpoint)), self._retry, _ops.json_of(200)))

    def openapi(self) -> dict:
        """The company's OpenAPI document: one typed operation per endpoint this key may execute."""
        return self._run(_ops.call(_ops.get(_ops.OPENAPI_PATH), self._retry, _ops.json_of(200)))

    # --- Jobs API ---
    # Each call takes the Jobs API's identity headers, defaulting to the client's: runs are seen by the same
    # (application_id, client_id) that started them.

    def _jobs_headers(self, username: str | None = None, application_id: str | None = None,
                      client_id: str | None = None, repository_id: str | None = None) -> dict:
        return _core.jobs_headers(self.company, self._key, self._secret,
                                  username or self.username or self._token().user["name"],
                                  application_id or self.application_id, client_id or self.client_id,
                                  repository_id)

    def run_job(self, repository_id: str, file: _core.FileArg | None = None, params: dict | None = None,
                metadata: dict | None = None, *, username: str | None = None, application_id: str | None = None,
                client_id: str | None = None, idempotency_key: str | bool | None = None) -> str:
        """Starts a run of a repository with an input ``file`` (a path, ``(name, bytes)`` or an open binary
        file: a ZIP, CSV, XLSX or JSON), ``params`` and ``metadata``; returns the job id. ``idempotency_key``
        as for ``execute()``: a repeated call answers the first run's id."""
        headers = self._jobs_headers(username, application_id, client_id, repository_id)
        closing: list = []
        try:
            request = _ops.run_request(headers, file, params, metadata, idempotency_key, closing)
            return self._run(_ops.call(request, self._retry, _ops.run_job_id))
        finally:
            for handle in closing:
                handle.close()

    def job_status(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                   client_id: str | None = None) -> dict:
        """The run's description (``status``: processing, completed or failed; inputs, params, metadata)."""
        headers = self._jobs_headers(username, application_id, client_id)
        request = _ops.jobs_api_get(_core.job_path(job_id), headers)
        return self._run(_ops.call(request, self._retry, _ops.json_of(200)))

    def job_result(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                   client_id: str | None = None) -> Any:
        """The run's ``result.json``; JobNotFinishedError while it runs, JobFailedError when it failed."""
        headers = self._jobs_headers(username, application_id, client_id)
        request = _ops.jobs_api_get(_core.job_path(job_id, "/result"), headers)
        return self._run(_ops.call(request, self._retry, _ops.json_of(200)))

    def wait_job(self, job_id: str, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT,
                 poll_interval: float = 0.5, max_poll_interval: float = 10.0, *, username: str | None = None,
                 application_id: str | None = None, client_id: str | None = None) -> dict:
        """Polls the run until it ends: its description when completed, JobFailedError when it failed,
        JobTimeoutError after ``timeout`` seconds (None: no limit)."""
        headers = self._jobs_headers(username, application_id, client_id)
        return self._run(_ops.wait_run(job_id, headers, timeout, poll_interval, max_poll_interval))

    def _download(self, job_id: str, what: str, path: str | os.PathLike, headers: dict) -> Path:
        with self._http.stream("GET", _core.job_path(job_id, f"/{what}"), headers=headers) as r:
            if r.status_code != 200:
                r.read()
                raise error_from_response(r)
            target = _core.download_target(path, r, f"{job_id}-{what}.zip")
            with _core.partial_file(target) as out:  # a broken download never leaves a truncated archive
                for chunk in r.iter_bytes():
                    out.write(chunk)
        return target

    def download_output(self, job_id: str, path: str | os.PathLike, *, username: str | None = None,
                        application_id: str | None = None, client_id: str | None = None) -> Path:
        """Writes the run's output folder as a ZIP to ``path`` (or into it, when it is a folder); returns the
        file written. JobNotFinishedError while it runs, JobFailedError when it failed."""
        return self._download(job_id, "output", path, self._jobs_headers(username, application_id, client_id))

    def download_logs(self, job_id: str, path: str | os.PathLike, *, username: str | None = None,
                      application_id: str | None = None, client_id: str | None = None) -> Path:
        """Writes the run's logs (stdout, stderr, the platform's) as a ZIP to ``path`` (or into it)."""
        return self._download(job_id, "logs", path, self._jobs_headers(username, application_id, client_id))


__all__ = ["Client", "Job"]
