"""The asyncio client: one ``httpx.AsyncClient``, safe to share between the tasks of one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx

from dataapi.client import _core, _ops
from dataapi.client._core import JobState, QueryResult, Tokens, check
from dataapi.client._ops import ResultPage
from dataapi.client.errors import error_from_response

T = TypeVar("T")


class AsyncJob(JobState):
    """An async execution of an endpoint: ``await job.refresh()``, ``await job.wait()``."""

    def __init__(self, client: AsyncClient, endpoint: str, body: dict):
        super().__init__(job_id=body.get("job_id"), status=body.get("status", "processing"),
                         polling_url=body.get("polling_url"))
        self._client, self.endpoint = client, endpoint
        self.update(body)  # a 202's body, a job's, or a job list's entry
        if self.polling_url is None and self.job_id is not None:
            self.polling_url = f"{_core.endpoint_path(endpoint)}/jobs/{self.job_id}"

    async def refresh(self) -> AsyncJob:
        """Reads the job again (a 429 or 503 on the way leaves it as it was and sets the next pause)."""
        await self._client._run(_ops.refresh(self))
        return self

    # ``timeout`` mirrors the sync flavour and ends in JobTimeoutError carrying the job's last state, which a
    # cancellation by asyncio.timeout() would not.
    async def wait(self, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
                   poll_interval: float = 0.5, max_poll_interval: float = 10.0) -> QueryResult:
        """As ``Job.wait()``: the result, JobFailedError or JobTimeoutError."""
        return await self._client._run(_ops.wait(self, timeout, poll_interval, max_poll_interval))

    # --- the stored result and the job's end: as ``Job``'s ---

    async def fetch_result(self, format: str | None = None, offset: int | None = None,  # noqa: A002
                           limit: int | None = None) -> bytes:
        request = _ops.result_request(self.endpoint, self.stored_id(), format, offset, limit)
        return await self._client._run(_ops.call(request, self._client._retry, _ops.content))

    async def page(self, offset: int = 0, limit: int | None = None) -> ResultPage:
        request = _ops.result_request(self.endpoint, self.stored_id(), None, offset, limit)
        return await self._client._run(_ops.call(request, self._client._retry, _ops.result_page))

    async def pages(self, limit: int = 10_000) -> AsyncIterator[ResultPage]:
        offset: int | None = 0
        while offset is not None:
            page = await self.page(offset, limit)
            yield page
            offset = page.following()

    async def iter_result(self, format: str | None = None, offset: int | None = None,  # noqa: A002
                          limit: int | None = None) -> AsyncIterator[bytes]:
        request = _ops.result_request(self.endpoint, self.stored_id(), format, offset, limit)
        async with self._client._stream(request) as r:
            async for chunk in r.aiter_bytes():
                yield chunk

    async def save_result(self, path: str | os.PathLike, format: str | None = None,  # noqa: A002
                          offset: int | None = None, limit: int | None = None) -> Path:
        target = Path(path)
        with _core.partial_file(target) as out:
            async for chunk in self.iter_result(format, offset, limit):
                out.write(chunk)
        return target

    async def cancel(self) -> AsyncJob:
        self.cancelled(await self._client.cancel_job(self.endpoint, self.stored_id()))
        return self


class AsyncClient:
    """``Client``'s asyncio flavour: the same constructor, every call awaited. Use ``async with``."""

    def __init__(self, base_url: str, company: str, api_key: str, api_secret: str, *,
                 timeout: float | httpx.Timeout | None = _core.DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None, username: str | None = None,
                 application_id: str = _core.DEFAULT_APPLICATION_ID, client_id: str = _core.DEFAULT_CLIENT_ID,
                 headers: dict | None = None, retries: int = 0, max_retry_wait: float = 60.0):
        self.base_url, self.company = base_url.rstrip("/"), company
        self._retry = _ops.Retry(retries, max_wait=max_retry_wait)
        self._key, self._secret = api_key, api_secret
        self.username, self.application_id, self.client_id = username, application_id, client_id
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers={"User-Agent": _core.USER_AGENT, **(headers or {})})
        self._tokens: Tokens | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # --- tokens ---

    async def _renew(self, old: Tokens | None) -> Tokens:
        return await self._run(_ops.renew(old, self.company, self._key, self._secret, self._retry))

    async def _token(self) -> Tokens:
        tokens = self._tokens
        if tokens is not None and tokens.fresh():
            return tokens
        async with self._lock:  # one renewal at a time: a refresh token is single-use
            if self._tokens is None or not self._tokens.fresh():
                self._tokens = await self._renew(self._tokens)
            return self._tokens

    async def _send(self, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        """A request with the bearer token; on a 401 the token is renewed and the request sent once more."""
        for attempt in (1, 2):
            tokens = await self._token()
            r = await self._http.request(method, path, headers=_core.bearer(tokens, headers), **kwargs)
            if r.status_code != 401 or attempt == 2:
                return r
            if self._tokens is tokens:
                tokens.expire()
        raise AssertionError("unreachable")

    async def _run(self, call: _ops.Call[T]) -> T:
        """Drives one of ``_ops``' calls: sends its requests, sleeps its pauses, returns its value."""
        outcome: _ops.Outcome | None = None
        try:
            while True:
                step = call.send(outcome)
                if isinstance(step, _ops.Pause):
                    await asyncio.sleep(step.seconds)
                    outcome = None
                    continue
                try:
                    if step.authenticated:
                        outcome = await self._send(step.method, step.path, **step.kwargs())
                    else:
                        outcome = await self._http.request(step.method, step.path, **step.kwargs())
                except httpx.TransportError as exc:
                    outcome = exc
        except StopIteration as stop:
            return stop.value

    @contextlib.asynccontextmanager
    async def _stream(self, request: _ops.Request) -> AsyncIterator[httpx.Response]:
        """A streamed authenticated GET whose status is 2xx (else its typed error), renewed once after a 401."""
        for attempt in (1, 2):
            tokens = await self._token()
            async with self._http.stream(request.method, request.path, params=request.params,
                                         headers=_core.bearer(tokens, request.headers)) as r:
                if r.status_code == 401 and attempt == 1:
                    if self._tokens is tokens:
                        tokens.expire()
                    continue
                if not r.is_success:
                    await r.aread()
                    raise error_from_response(r)
                yield r
                return

    async def login(self) -> dict:
        """Exchanges the key now and returns the ``user`` the server describes."""
        return (await self._token()).user

    # --- Data API ---

    @overload
    async def execute(self, endpoint: str, /, *, idempotency_key: str | bool | None = None, wait_async: None = None,
                      **params: Any) -> QueryResult: ...

    @overload
    async def execute(self, endpoint: str, /, *, idempotency_key: str | bool | None = None, wait_async: float,
                      **params: Any) -> QueryResult | AsyncJob: ...

    async def execute(self, endpoint: str, /, *, idempotency_key: str | bool | None = None,
                      wait_async: float | None = None, **params: Any) -> QueryResult | AsyncJob:
        """As ``Client.execute()``: the rows (an async endpoint's job is awaited), or with ``wait_async`` the
        job of a sync query that outlasted it."""
        request = _ops.execute_request(endpoint, params, idempotency_key=idempotency_key, wait_async=wait_async)
        r = await self._run(_ops.call(request, self._retry, _ops.executed))
        if isinstance(r, QueryResult):
            return r
        job = AsyncJob(self, endpoint, r)
        return job if wait_async is not None else await job.wait()

    async def export(self, endpoint: str, params: dict | None = None, *, format: str = "csv",  # noqa: A002
                     idempotency_key: str | bool | None = None,
                     timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT) -> bytes:  # noqa: ASYNC109
        """As ``Client.export()``: the rows encoded in ``format``."""
        request = _ops.execute_request(endpoint, params, idempotency_key=idempotency_key, format=format)
        r = await self._run(_ops.send(request, self._retry))
        if check(r, 200, 202).status_code == 200:
            return r.content
        job = AsyncJob(self, endpoint, r.json())
        await job.wait(timeout=timeout)
        return await job.fetch_result(format)

    async def submit(self, endpoint: str, params: dict | None = None, callback_url: str | None = None, *,
                     idempotency_key: str | bool | None = None, wait_async: float | None = None) -> AsyncJob:
        """Starts ``"namespace/slug"`` and returns its job (already completed, without id, on a sync endpoint
        unless ``wait_async`` let it go on as a job)."""
        request = _ops.execute_request(endpoint, params, callback_url=callback_url, idempotency_key=idempotency_key,
                                       wait_async=wait_async)
        return AsyncJob(self, endpoint, await self._run(_ops.call(request, self._retry, _ops.submitted)))

    async def get_job(self, endpoint: str, job_id: str) -> AsyncJob:
        body = await self._run(_ops.call(_ops.get(_ops.job_url(endpoint, job_id)), self._retry, _ops.json_of(200)))
        return AsyncJob(self, endpoint, body)

    async def jobs(self, endpoint: str, *, status: str | None = None, since: str | None = None,
                   until: str | None = None, page_size: int | None = None) -> AsyncIterator[AsyncJob]:
        """As ``Client.jobs()``: ``async for job in api.jobs("ns/slug")``."""
        cursor: str | None = None
        while True:
            request = _ops.jobs_request(endpoint, status, since, until, cursor, page_size)
            entries, cursor = await self._run(_ops.call(request, self._retry, _ops.jobs_page))
            for entry in entries:
                yield AsyncJob(self, endpoint, entry)
            if not cursor:
                return

    async def cancel_job(self, endpoint: str, job_id: str) -> dict | None:
        return await self._run(_ops.call(_ops.delete(_ops.job_url(endpoint, job_id)), self._retry, _ops.cancelled))

    async def catalog(self) -> list[dict]:
        return await self._run(_ops.call(_ops.get(_ops.CATALOG_PATH), self._retry, _ops.json_of(200)))

    async def endpoint(self, endpoint: str) -> dict:
        return await self._run(_ops.call(_ops.get(_core.endpoint_path(endpoint)), self._retry, _ops.json_of(200)))

    async def openapi(self) -> dict:
        return await self._run(_ops.call(_ops.get(_ops.OPENAPI_PATH), self._retry, _ops.json_of(200)))

    # --- Jobs API ---

    async def _jobs_headers(self, username: str | None = None, application_id: str | None = None,
                            client_id: str | None = None, repository_id: str | None = None) -> dict:
        user = username or self.username or (await self._token()).user["name"]
        return _core.jobs_headers(self.company, self._key, self._secret, user,
                                  application_id or self.application_id, client_id or self.client_id,
                                  repository_id)

    async def run_job(self, repository_id: str, file: _core.FileArg | None = None, params: dict | None = None,
                      metadata: dict | None = None, *, username: str | None = None,
                      application_id: str | None = None, client_id: str | None = None,
                      idempotency_key: str | bool | None = None) -> str:
        """As ``Client.run_job()``: the new run's job id."""
        headers = await self._jobs_headers(username, application_id, client_id, repository_id)
        closing: list = []
        try:
            request = _ops.run_request(headers, file, params, metadata, idempotency_key, closing)
            return await self._run(_ops.call(request, self._retry, _ops.run_job_id))
        finally:
            for handle in closing:
                handle.close()

    async def job_status(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                         client_id: str | None = None) -> dict:
        """The run's description (``status``: processing, completed or failed; inputs, params, metadata)."""
        headers = await self._jobs_headers(username, application_id, client_id)
        request = _ops.jobs_api_get(_core.job_path(job_id), headers)
        return await self._run(_ops.call(request, self._retry, _ops.json_of(200)))

    async def job_result(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                         client_id: str | None = None) -> Any:
        """The run's ``result.json``; JobNotFinishedError while it runs, JobFailedError when it failed."""
        headers = await self._jobs_headers(username, application_id, client_id)
        request = _ops.jobs_api_get(_core.job_path(job_id, "/result"), headers)
        return await self._run(_ops.call(request, self._retry, _ops.json_of(200)))

    async def wait_job(self, job_id: str, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
                       poll_interval: float = 0.5, max_poll_interval: float = 10.0, *, username: str | None = None,
                       application_id: str | None = None, client_id: str | None = None) -> dict:
        """Polls the run until it ends: its description when completed, JobFailedError when it failed,
        JobTimeoutError after ``timeout`` seconds (None: no limit)."""
        headers = await self._jobs_headers(username, application_id, client_id)
        return await self._run(_ops.wait_run(job_id, headers, timeout, poll_interval, max_poll_interval))

    async def _download(self, job_id: str, what: str, path: str | os.PathLike, headers: dict) -> Path:
        async with self._http.stream("GET", _core.job_path(job_id, f"/{what}"), headers=headers) as r:
            if r.status_code != 200:
                await r.aread()
                raise error_from_response(r)
            target = _core.download_target(path, r, f"{job_id}-{what}.zip")
            with _core.partial_file(target) as out:
                async for chunk in r.aiter_bytes():
                    out.write(chunk)
        return target

    async def download_output(self, job_id: str, path: str | os.PathLike, *, username: str | None = None,
                              application_id: str | None = None, client_id: str | None = None) -> Path:
        headers = await self._jobs_headers(username, application_id, client_id)
        return await self._download(job_id, "output", path, headers)

    async def download_logs(self, job_id: str, path: str | os.PathLike, *, username: str | None = None,
                            application_id: str | None = None, client_id: str | None = None) -> Path:
        headers = await self._jobs_headers(username, application_id, client_id)
        return await self._download(job_id, "logs", path, headers)


__all__ = ["AsyncClient", "AsyncJob"]
