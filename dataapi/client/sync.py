"""The blocking client: one ``httpx.Client``, safe to share between threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dataapi.client import _core
from dataapi.client._core import JobState, QueryResult, Tokens, check
from dataapi.client.errors import JobTimeoutError, error_from_response


class Job(JobState):
    """An async execution of an endpoint. ``refresh()`` reads its state again; ``wait()`` polls until it ends."""

    def __init__(self, client: Client, endpoint: str, body: dict):
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

    def refresh(self) -> Job:
        """Reads the job again (a 429 or 503 on the way leaves it as it was and sets the next pause)."""
        if self.polling_url is None:  # a sync endpoint answered at once: nothing to poll
            return self
        response = self._client._send("GET", self.polling_url)
        transient, self._retry_after = _core.transient_retry_after(response)
        if not transient:
            self.update(check(response, 200).json())
        return self

    def wait(self, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT, poll_interval: float = 0.5,
             max_poll_interval: float = 10.0) -> QueryResult:
        """Polls until the job ends: its result, or JobFailedError; JobTimeoutError after ``timeout`` seconds
        (None: no limit). Pauses start at ``poll_interval`` and double up to ``max_poll_interval``; a
        ``Retry-After`` from the server sets the next one."""
        backoff = _core.Backoff(poll_interval, max_poll_interval, timeout)
        while not self.done:
            if backoff.remaining() <= 0:
                raise JobTimeoutError(f"job {self.job_id} still {self.status} after {timeout:g}s", job=self)
            time.sleep(backoff.next_pause(self._retry_after))
            self.refresh()
        return self.outcome()


class Client:
    """The Data API and the Jobs API with one company's API key.

    The key and secret are exchanged for tokens on first use; the access token is renewed (refresh token,
    else a new login) before it expires and once more when the server refuses it. ``username``,
    ``application_id`` and ``client_id`` are the Jobs API's headers: ``username`` is the key's user, read from
    the login when not given."""

    def __init__(self, base_url: str, company: str, api_key: str, api_secret: str, *,
                 timeout: float | httpx.Timeout | None = _core.DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None, username: str | None = None,
                 application_id: str = _core.DEFAULT_APPLICATION_ID, client_id: str = _core.DEFAULT_CLIENT_ID,
                 headers: dict | None = None):
        self.base_url, self.company = base_url.rstrip("/"), company
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

    def _login(self) -> Tokens:
        sent = time.monotonic()
        r = self._http.post(_core.LOGIN_PATH, json={"company_slug": self.company, "api_key": self._key,
                                                    "api_secret": self._secret})
        return Tokens.from_pair(check(r, 200).json(), sent)

    def _renew(self, old: Tokens | None) -> Tokens:
        if old is not None and old.refreshable():
            sent = time.monotonic()
            r = self._http.post(_core.REFRESH_PATH, json={"refresh_token": old.refresh})
            if r.status_code == 200:
                return Tokens.from_pair(r.json(), sent)
            if r.status_code != 401:  # 401: the refresh token is spent or revoked: log in again
                raise error_from_response(r)
        return self._login()

    def _token(self) -> Tokens:
        tokens = self._tokens
        if tokens is not None and tokens.fresh():
            return tokens
        with self._lock:  # one renewal at a time: a refresh token is single-use
            if self._tokens is None or not self._tokens.fresh():
                self._tokens = self._renew(self._tokens)
            return self._tokens

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A request with the bearer token; on a 401 the token is renewed and the request sent once more."""
        for attempt in (1, 2):
            tokens = self._token()
            r = self._http.request(method, path, headers={"Authorization": f"Bearer {tokens.access}"}, **kwargs)
            if r.status_code != 401 or attempt == 2:
                return r
            with self._lock:
                if self._tokens is tokens:
                    tokens.expire()
        raise AssertionError("unreachable")

    def login(self) -> dict:
        """Exchanges the key now (it is otherwise done on first use) and returns the ``user`` the server
        describes (name, policies, actions)."""
        return self._token().user

    # --- Data API ---

    def execute(self, endpoint: str, /, **params: Any) -> QueryResult:
        """Runs ``"namespace/slug"`` with ``params`` and returns its rows. An async endpoint's job is waited
        for (``Job.wait()``'s defaults); use ``submit()`` to control that."""
        r = self._send("POST", f"{_core.endpoint_path(endpoint)}/execute", json=_core.execute_body(params))
        check(r, 200, 202)
        if r.status_code == 202:
            return Job(self, endpoint, r.json()).wait()
        return QueryResult.from_body(r.json())

    def submit(self, endpoint: str, params: dict | None = None, callback_url: str | None = None) -> Job:
        """Starts ``"namespace/slug"`` and returns its Job. On a sync endpoint the answer is already there:
        the Job is completed (no ``job_id``)."""
        r = self._send("POST", f"{_core.endpoint_path(endpoint)}/execute",
                       json=_core.execute_body(params or {}, callback_url))
        check(r, 200, 202)
        if r.status_code == 200:
            return Job(self, endpoint, {"job_id": None, "status": "completed", "result": r.json()})
        return Job(self, endpoint, r.json())

    def get_job(self, endpoint: str, job_id: str) -> Job:
        """The job ``job_id`` of ``"namespace/slug"`` as the server sees it now."""
        r = self._send("GET", f"{_core.endpoint_path(endpoint)}/jobs/{quote(job_id, safe='')}")
        return Job(self, endpoint, check(r, 200).json())

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
                client_id: str | None = None) -> str:
        """Starts a run of a repository with an input ``file`` (a path, ``(name, bytes)`` or an open binary
        file: a ZIP, CSV, XLSX or JSON), ``params`` and ``metadata``; returns the job id."""
        headers = self._jobs_headers(username, application_id, client_id, repository_id)
        closing: list = []
        try:
            files = {"file": _core.file_part(file, closing)} if file is not None else None
            r = self._http.post(f"{_core.JOBS_PREFIX}/execute", headers=headers, files=files,
                                data=_core.run_form(params, metadata))
        finally:
            for handle in closing:
                handle.close()
        return check(r, 201).json()["job_id"]

    def job_status(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                   client_id: str | None = None) -> dict:
        """The run's description (``status``: processing, completed or failed; inputs, params, metadata)."""
        headers = self._jobs_headers(username, application_id, client_id)
        return check(self._http.get(_core.job_path(job_id), headers=headers), 200).json()

    def job_result(self, job_id: str, *, username: str | None = None, application_id: str | None = None,
                   client_id: str | None = None) -> Any:
        """The run's ``result.json``; JobNotFinishedError while it runs, JobFailedError when it failed."""
        headers = self._jobs_headers(username, application_id, client_id)
        return check(self._http.get(_core.job_path(job_id, "/result"), headers=headers), 200).json()

    def wait_job(self, job_id: str, timeout: float | None = _core.DEFAULT_WAIT_TIMEOUT, poll_interval: float = 0.5,
                 max_poll_interval: float = 10.0, *, username: str | None = None,
                 application_id: str | None = None, client_id: str | None = None) -> dict:
        """Polls the run until it ends: its description when completed, JobFailedError when it failed,
        JobTimeoutError after ``timeout`` seconds (None: no limit)."""
        headers = self._jobs_headers(username, application_id, client_id)
        backoff = _core.Backoff(poll_interval, max_poll_interval, timeout)
        while True:
            r = self._http.get(_core.job_path(job_id), headers=headers)
            transient, retry_after = _core.transient_retry_after(r)
            if not transient:
                status = check(r, 200).json()
                if status.get("status") == "completed":
                    return status
                if status.get("status") != "processing":
                    raise _core.repository_job_failed(status)
            if backoff.remaining() <= 0:
                raise JobTimeoutError(f"job {job_id} still running after {timeout:g}s")
            time.sleep(backoff.next_pause(retry_after))

    def _download(self, job_id: str, what: str, path: str | os.PathLike, headers: dict) -> Path:
        with self._http.stream("GET", _core.job_path(job_id, f"/{what}"), headers=headers) as r:
            if r.status_code != 200:
                r.read()
                raise error_from_response(r)
            target = _core.download_target(path, r, f"{job_id}-{what}.zip")
            partial = target.with_name(target.name + ".part")
            try:
                with partial.open("wb") as out:
                    for chunk in r.iter_bytes():
                        out.write(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)  # a broken download never leaves a truncated archive under the real name
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
