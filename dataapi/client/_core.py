"""What the sync and the asyncio clients share: request shapes, answers read into objects, token lifetimes,
the polling schedule. No I/O here."""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dataapi.client.errors import DataAPIError, JobFailedError, RateLimit, error_from_response, parse_retry_after

USER_AGENT = "dataapi-python-client/1"
DEFAULT_TIMEOUT = httpx.Timeout(90.0, connect=10.0)  # a sync query may take the server's 60 s, plus the trip
DEFAULT_WAIT_TIMEOUT = 600.0
DEFAULT_APPLICATION_ID = DEFAULT_CLIENT_ID = "python-client"
LOGIN_PATH, REFRESH_PATH = "/api/v1/auth/api-key", "/api/v1/auth/refresh"
JOBS_PREFIX = "/api/v1/job"
# Answers that say "not now" rather than "no": a job being waited for is polled again after them.
TRANSIENT = frozenset({429, 502, 503, 504})


def endpoint_path(endpoint: str) -> str:
    """``"namespace/slug"`` as the URL path of the endpoint (each part quoted)."""
    namespace, sep, slug = endpoint.strip("/").partition("/")
    if not sep or not namespace or not slug or "/" in slug:
        raise ValueError(f"endpoint must be 'namespace/slug', not {endpoint!r}")
    return f"/api/v1/data-api/{quote(namespace, safe='')}/{quote(slug, safe='')}"


def execute_body(params: dict, callback_url: str | None = None) -> dict:
    body: dict[str, Any] = {"parameter_values": params}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


def check(response: httpx.Response, *ok: int) -> httpx.Response:
    """The response when its status is one of ``ok`` (any 2xx when none are given), else its typed error."""
    if (response.status_code in ok) if ok else response.is_success:
        return response
    raise error_from_response(response)


# --- tokens ------------------------------------------------------------------------------------------------

def _margin(ttl: float) -> float:
    """How long before its expiry a token is renewed: a fifth of its life (at most 30 s), so that a request
    never carries a token that expires on the way, plus the second a JWT's whole-second ``exp`` may lose."""
    return min(30.0, ttl / 5) + 1.0


def bearer(tokens: Tokens, headers: dict | None = None) -> dict:
    return {**(headers or {}), "Authorization": f"Bearer {tokens.access}"}


@dataclass
class Tokens:
    """A token pair and when each stops being usable, on the monotonic clock. Lifetimes count from when the
    login was sent, so they never outlast the server's."""

    access: str
    refresh: str
    access_until: float
    refresh_until: float
    user: dict

    @classmethod
    def from_pair(cls, pair: dict, sent_at: float) -> Tokens:
        access_ttl = float(pair.get("access_token_expires_in") or 0)
        refresh_ttl = float(pair.get("refresh_token_expires_in") or 0)
        return cls(access=pair["access_token"], refresh=pair["refresh_token"],
                   access_until=sent_at + access_ttl - _margin(access_ttl),
                   refresh_until=sent_at + refresh_ttl - _margin(refresh_ttl), user=pair.get("user") or {})

    def fresh(self) -> bool:
        return time.monotonic() < self.access_until

    def refreshable(self) -> bool:
        return time.monotonic() < self.refresh_until

    def expire(self) -> None:
        """The server refused the access token (a signing key removed, a clock apart): renew before next use."""
        self.access_until = 0.0


# --- results and jobs of the Data API ---------------------------------------------------------------------

@dataclass
class QueryResult:
    """Rows of an endpoint: from a sync execution, or the result of a completed async job.

    ``executed_at`` is when the sync query ran, or when the async job completed; ``job_id`` is the async job's
    id (None for a sync execution); ``raw`` the decoded answer as the server sent it. Of a sync answer:
    ``cached`` (answered from the result cache, ``X-Cache: HIT``), ``age`` (its ``Age``: seconds since that
    execution), ``request_id`` (``X-Request-Id``) and ``rate_limit`` (its ``RateLimit-*`` headers)."""

    rows: list[dict]
    columns: list[dict] | None
    row_count: int
    truncated: bool
    max_rows: int | None = None
    executed_at: str | None = None
    job_id: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    cached: bool = False
    age: float | None = None
    request_id: str | None = None
    rate_limit: RateLimit | None = None

    @classmethod
    def from_response(cls, response: httpx.Response) -> QueryResult:
        result = cls.from_body(response.json())
        h = response.headers
        result.cached = h.get("x-cache", "").upper() == "HIT" or bool(result.raw.get("cached"))
        try:
            result.age = float(h["age"]) if "age" in h else None
        except ValueError:
            result.age = None
        result.request_id, result.rate_limit = h.get("x-request-id"), RateLimit.from_headers(h)
        return result

    @classmethod
    def from_body(cls, body: dict, job_id: str | None = None, executed_at: str | None = None) -> QueryResult:
        rows = body.get("rows") or []
        return cls(rows=rows, columns=body.get("columns"), row_count=body.get("row_count", len(rows)),
                   truncated=bool(body.get("truncated", False)), max_rows=body.get("max_rows"),
                   executed_at=body.get("executed_at") or executed_at, job_id=job_id, raw=body)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class JobState:
    """What ``GET .../jobs/:job_id`` says of an async job."""

    job_id: str | None
    status: str
    polling_url: str | None = None
    result: QueryResult | None = None
    error: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
    callback: dict | None = None
    raw: dict = field(default_factory=dict, repr=False)

    deleted: bool = False
    retry_after: float | None = field(default=None, repr=False)  # of the last poll: the next pause

    def update(self, body: dict) -> None:
        self.job_id = body.get("job_id", self.job_id)
        self.status = body.get("status", self.status)
        self.error, self.created_at = body.get("error"), body.get("created_at")
        self.completed_at, self.callback, self.raw = body.get("completed_at"), body.get("callback"), body
        result = body.get("result")
        self.result = QueryResult.from_body(result, self.job_id, self.completed_at) if result else None

    @property
    def done(self) -> bool:
        return self.status != "processing"

    def stored_id(self) -> str:
        """The job's id, for the routes of a stored job (a sync execution answered at once has none)."""
        if self.job_id is None:
            raise ValueError("a sync execution answered at once is no stored job; use execute() or export()")
        return self.job_id

    def cancelled(self, body: dict | None) -> None:
        """What a DELETE answered: the cancelled job's body, or None when the finished job was deleted."""
        if body is None:
            self.deleted = True
        else:
            self.update(body)

    def outcome(self) -> QueryResult:
        """The result of a finished job, or JobFailedError."""
        if self.status == "completed" and self.result is not None:
            return self.result
        raise JobFailedError(None, "JOB_FAILED", self.error or f"Job ended as {self.status}", body=self.raw, job=self)


class Backoff:
    """The pauses between polls: ``initial`` seconds, doubling up to ``maximum``; a ``Retry-After`` the server
    sent replaces the next pause; never past the deadline."""

    def __init__(self, initial: float, maximum: float, timeout: float | None):
        if initial <= 0 or maximum < initial:
            raise ValueError("poll_interval must be > 0 and max_poll_interval >= poll_interval")
        self.delay, self.maximum = initial, maximum
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def next_pause(self, retry_after: float | None = None) -> float:
        pause = self.delay if retry_after is None else retry_after
        self.delay = min(self.delay * 2, self.maximum)
        return max(0.0, min(pause, self.remaining()))


def transient_retry_after(response: httpx.Response) -> tuple[bool, float | None]:
    """Whether a poll's answer is a passing refusal (429, 502, 503, 504), and the ``Retry-After`` sent with it
    (sent with a 200 too, it sets the next pause)."""
    return response.status_code in TRANSIENT, parse_retry_after(response.headers.get("retry-after"))


# --- the Jobs API ------------------------------------------------------------------------------------------

def jobs_headers(company: str, api_key: str, api_secret: str, username: str, application_id: str,
                 client_id: str, repository_id: str | None = None) -> dict:
    headers = {"username": username, "organization_id": company, "application_id": application_id,
               "client_id": client_id, "x-api-key": f"{api_key}.{api_secret}"}
    if repository_id is not None:
        headers["repository_id"] = str(repository_id)
    return headers


def job_path(job_id: str, tail: str = "") -> str:
    return f"{JOBS_PREFIX}/{quote(str(job_id), safe='')}{tail}"


FileArg = str | os.PathLike | tuple | Any


def file_part(file: FileArg, closing: list) -> tuple:
    """The multipart ``file`` field of a run: a path, ``(filename, bytes | file[, content_type])``, or an open
    binary file (its name is used). Files opened here are appended to ``closing``."""
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        handle = path.open("rb")
        closing.append(handle)
        return path.name, handle, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if isinstance(file, tuple):
        if len(file) == 2:
            return file[0], file[1], mimetypes.guess_type(file[0])[0] or "application/octet-stream"
        return file
    name = Path(getattr(file, "name", "input")).name
    return name, file, mimetypes.guess_type(name)[0] or "application/octet-stream"


def run_form(params: dict | None, metadata: dict | None) -> dict:
    data = {}
    if params is not None:
        data["params"] = json.dumps(params)
    if metadata is not None:
        data["metadata"] = json.dumps(metadata)
    return data


@contextlib.contextmanager
def partial_file(target: Path) -> Iterator[Any]:
    """An open ``<target>.part`` renamed to ``target`` when the block ends well, removed when it fails: a
    broken download never leaves a truncated file under the real name."""
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as out:
            yield out
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)


def download_target(path: str | os.PathLike, response: httpx.Response, default_name: str) -> Path:
    """Where to write a downloaded archive: ``path``, or inside it when it is a folder (the server's name)."""
    target = Path(path)
    if target.is_dir():
        name = default_name
        disposition = response.headers.get("content-disposition", "")
        if 'filename="' in disposition:
            name = Path(disposition.split('filename="', 1)[1].split('"', 1)[0]).name or default_name
        target = target / name
    return target


def repository_job_failed(status: dict) -> DataAPIError:
    return JobFailedError(None, "JOB_FAILED", "Job failed", body=status, job=status)
