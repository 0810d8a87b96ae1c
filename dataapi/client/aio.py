"""The asyncio client: one ``httpx.AsyncClient``, safe to share between the tasks of one event loop."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dataapi.client import _core
from dataapi.client._core import JobState, QueryResult, Tokens, check
from dataapi.client.errors import JobTimeoutError, error_from_response


class AsyncJob(JobState):
    """An async execution of an endpoint: ``await job.refresh()``, ``await job.wait()``."""

    def __init__(self, client: AsyncClient, endpoint: str, body: dict):
        super().__init__(job_id=body.get("job_id"), status=body.get("status", "processing"),
                         polling_url=body.get("polling_url"))
        self._client, self.endpoint = client, endpoint
        self._retry_after: float | None = None
        if "polling_url" not in body:
            self.update(body)
        else:
            self.raw = body
        if self.polling_url is None and self.job_id is not None:
            self.polling_url = f"{_core.endpoint_path(endpoint)}/jobs/{self.job_id}"

    async def refresh(self) -> AsyncJob:
        """Reads the job again (a 429 or 503 on the way leaves it as it was and sets the next pause)."""
        if self.polling_url is None:
            return self
        response = await self._client._send("GET", self.polling_url)
        transient, self._retry_after = _core.transient_retry_after(response)
        if not transient:
            self.update(check(response, 200).json())
        return self

    # ``timeout`` mirrors the sync flavour and ends in JobTimeoutError carrying the job's last state, which a
    # cancellation by asyncio.timeout() would not.
    async def wait(self, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
                   poll_interval: float = 0.5, max_poll_interval: float = 10.0) -> QueryResult:
        """As ``Job.wait()``: the result, JobFailedError or JobTimeoutError."""
        backoff = _core.Backoff(poll_interval, max_poll_interval, timeout)
        while not self.done:
            if backoff.remaining() <= 0:
                raise JobTimeoutError(f"job {self.job_id} still {self.status} after {timeout:g}s", job=self)
            await asyncio.sleep(backoff.next_pause(self._retry_after))
            await self.refresh()
        return self.outcome()


class AsyncClient:
    """``Client``'s asyncio flavour: the same constructor, every call awaited. Use ``async with``."""

    def __init__(self, base_url: str, company: str, api_key: str, api_secret: str, *,
                 timeout: float | httpx.Timeout | None = _core.DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None, username: str | None = None,
                 application_id: str = _core.DEFAULT_APPLICATION_ID, client_id: str = _core.DEFAULT_CLIENT_ID,
                 headers: dict | None = None):
        self.base_url, self.company = base_url.rstrip("/"), company
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

    async def _login(self) -> Tokens:
        sent = time.monotonic()
        r = await self._http.post(_core.LOGIN_PATH, json={"company_slug": self.company, "api_key": self._key,
                                                          "api_secret": self._secret})
        return Tokens.from_pair(check(r, 200).json(), sent)

    async def _renew(self, old: Tokens | None) -> Tokens:
        if old is not None and old.refreshable():
            sent = time.monotonic()
            r = await self._http.post(_core.REFRESH_PATH, json={"refresh_token": old.refresh})
            if r.status_code == 200:
                return Tokens.from_pair(r.json(), sent)
            if r.status_code != 401:  # 401: the refresh token is spent or revoked: log in again
                raise error_from_response(r)
        return await self._login()

    async def _token(self) -> Tokens:
        tokens = self._tokens
        if tokens is not None and tokens.fresh():
            return tokens
        async with self._lock:  # one renewal at a time: a refresh token is single-use
            if self._tokens is None or not self._tokens.fresh():
                self._tokens = await self._renew(self._tokens)
            return self._tokens

    async def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request with the bearer token; on a 401 the token is renewed and the request sent once more."""
        for attempt in (1, 2):
            tokens = await self._token()
            r = await self._http.request(method, path, headers={"Authorization": f"Bearer {tokens.access}"},
                                         **kwargs)
            if r.status_code != 401 or attempt == 2:
                return r
            if self._tokens is tokens:
                tokens.expire()
        raise AssertionError("unreachable")

    async def login(self) -> dict:
        """Exchanges the key now and returns the ``user`` the server describes."""
        return (await self._token()).user

    # --- Data API ---

    async def execute(self, endpoint: str, /, **params: Any) -> QueryResult:
        """Runs ``"namespace/slug"`` with ``params`` and returns its rows (an async endpoint's job is awaited)."""
        r = await self._send("POST", f"{_core.endpoint_path(endpoint)}/execute", json=_core.execute_body(params))
        check(r, 200, 202)
        if r.status_code == 202:
            return await AsyncJob(self, endpoint, r.json()).wait()
        return QueryResult.from_body(r.json())

    async def submit(self, endpoint: str, params: dict | None = None, callback_url: str | None = None) -> AsyncJob:
        """Starts ``"namespace/slug"`` and returns its job (already completed, without id, on a sync endpoint)."""
        r = await self._send("POST", f"{_core.endpoint_path(endpoint)}/execute",
                             json=_core.execute_body(params or {}, callback_url))
        check(r, 200, 202)
        if r.status_code == 200:
            return AsyncJob(self, endpoint, {"job_id": None, "status": "completed", "result": r.json()})
        return AsyncJob(self, endpoint, r.json())

    async def get_job(self, endpoint: str, job_id: str) -> AsyncJob:
        r = await self._send("GET", f"{_core.endpoint_path(endpoint)}/jobs/{quote(job_id, safe='')}")
        return AsyncJob(self, endpoint, check(r, 200).json())

    # --- Jobs API ---

    async def _jobs_headers(self, username: str | None = None, application_id: str | None = None,
                            client_id: str | None = None, repository_id: str | None = None) -> dict:
        user = username or self.username or (await self._token()).user["name"]
        return _core.jobs_headers(self.company, self._key, self._secret, user,
                                  application_id or self.application_id, client_id or self.client_id,
                                  repository_id)

    async def run_job(self, repository_id: str, file: _core.FileArg | None = None, params: dict | None = None,
                      metadata: dict | None = None, *, username: str | None = None,
                      application_id: str | None = None, client_id: str | None = None) -> str:
        """As ``Client.run_job()``: the new run's job id."""
        headers = await self._jobs_headers(username, application_id, client_id, repository_id)
        closing: list = []
        try:
            files = {"file": _core.file_part(file, closing)} if file is not None else None
            r = await self._http.post(f"{_core.JOBS_PREFIX}/execute", headers=headers, files=files,
                                      data=_core.run_form(params, metadata))
        finally:
            for handle in closing:
                handle.close()
        return check(r, 201).json()["job_id"]

    async def job_status(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                         client_id: str | None = None) -> dict:
        headers = await self._jobs_headers(username, application_id, client_id)
        return check(await self._http.get(_core.job_path(job_id), headers=headers), 200).json()

    async def job_result(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                         client_id: str | None = None) -> Any:
        headers = await self._jobs_headers(username, application_id, client_id)
        return check(await self._http.get(_core.job_path(job_id, "/result"), headers=headers), 200).json()

    async def wait_job(self, job_id: str, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
                       poll_interval: float = 0.5, max_poll_interval: float = 10.0, *, username: str | None = None,
                       application_id: str | None = None, client_id: str | None = None) -> dict:
        headers = await self._jobs_headers(username, application_id, client_id)
        backoff = _core.Backoff(poll_interval, max_poll_interval, timeout)
        while True:
            r = await self._http.get(_core.job_path(job_id), headers=headers)
            transient, retry_after = _core.transient_retry_after(r)
            if not transient:
                status = check(r, 200).json()
                if status.get("status") == "completed":
                    return status
                if status.get("status") != "processing":
                    raise _core.repository_job_failed(status)
            if backoff.remaining() <= 0:
                raise JobTimeoutError(f"job {job_id} still running after {timeout:g}s")
            await asyncio.sleep(backoff.next_pause(retry_after))

    async def _download(self, job_id: str, what: str, path: str | os.PathLike, headers: dict) -> Path:
        async with self._http.stream("GET", _core.job_path(job_id, f"/{what}"), headers=headers) as r:
            if r.status_code != 200:
                await r.aread()
                raise error_from_response(r)
            target = _core.download_target(path, r, f"{job_id}-{what}.zip")
            partial = target.with_name(target.name + ".part")
            try:
                with partial.open("wb") as out:
                    async for chunk in r.aiter_bytes():
                        out.write(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
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
