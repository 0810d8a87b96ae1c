"""The Data API's rules, called by the HTTP handlers (``api/data_api.py``): preparing an execution (the endpoint,
the caller's share context, the parameters, the workflow's input), reading a job, judging an outcome. They
take plain data and a connection or session and raise ``DomainError``s in the Data API's codes."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlmodel import Session

from dataapi.callbacks.url import UnsafeCallbackUrl, check_url
from dataapi.data_api import jobs
from dataapi.data_api.definitions import specs_of
from dataapi.data_api.endpoints import executable_endpoint, find_endpoint
from dataapi.data_api.param_values import ParamError, coerce
from dataapi.data_api.share_contexts import effective_share_context
from dataapi.errors import Conflict, DomainError, Invalid, NotFound
from dataapi.identity.service import valid_slug
from dataapi.messages import CallbackInput, QueryInput, QueryOutput
from dataapi.models import Job, pk
from dataapi.settings import Settings
from dataapi.statuses import ExecutionMode, JobStatus, QueryStatus

log = logging.getLogger("dataapi.data_api")
JOB_ID_RE = re.compile(r"^[0-9a-f]{24}\Z")
BODY_FIELDS = frozenset({"parameter_values", "callback_url"})


class Caller(Protocol):
    """Who executes: the claims of the caller's token (``dataapi.identity.tokens.Claims``)."""

    company_id: int
    company_slug: str
    user_id: int
    api_key_id: int | None


class EndpointNotFound(NotFound):
    code = "ENDPOINT_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("Endpoint does not exist, is inactive, or belongs to another company")


def endpoint_path(namespace: str, slug: str) -> tuple[str, str]:
    """A route's namespace and slug; one that cannot name an endpoint is the endpoint's 404."""
    if not valid_slug(namespace) or not valid_slug(slug):
        raise EndpointNotFound()
    return namespace, slug


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("Job does not exist or does not belong to the endpoint")


class WouldWrite(Exception):  # noqa: N818 - a signal, not an error
    """A preparation asked to only read (``read_only``) would write the job row: the caller prepares again where
    a write may wait for the store's writer."""


class ExecutionTimeout(DomainError):
    status, code = 408, "EXECUTION_TIMEOUT"


# Failures of the query that are the request's to fix (a narrower query, an endpoint definition to update):
# the activity's error type -> the code of the 422 that answers them.
REFUSALS = {"ResultTooLarge": "RESULT_TOO_LARGE", "SqlNotAllowed": "SQL_NOT_ALLOWED"}


def check_body(body: dict[str, Any]) -> None:
    unknown = set(body) - BODY_FIELDS
    if unknown:
        raise DomainError(f"Unknown field '{sorted(unknown)[0]}' in the request body", status=400,
                          code="INVALID_PARAMS")


def check_callback(url: Any, allow_cidrs: list[str], allow_hosts: list[str]) -> str:
    """Accepts an HTTPS URL whose host is not an internal or encoded address nor a special-use name (checked
    again, with DNS, at every delivery attempt)."""
    if not isinstance(url, str):
        raise Invalid("callback_url must be an HTTPS URL", code="INVALID_CALLBACK_URL")
    try:
        return check_url(url, allow_cidrs=allow_cidrs, allow_hosts=allow_hosts).url
    except UnsafeCallbackUrl as e:
        raise Invalid(f"callback_url refused: {e.reason}", code="INVALID_CALLBACK_URL") from None


def prepare_execution(conn: Connection, settings: Settings, caller: Caller, namespace: str, slug: str,
                      body: dict[str, Any], *, job_id: str | None = None, row: dict[str, Any] | None = None,
                      respond_async: bool = False, read_only: bool = False) -> QueryInput:
    """Loads the endpoint, applies the caller's share context and binds the parameters; an async job's row is
    written here, before its workflow starts, so that polling never races the start. ``job_id`` and ``row``
    (extra columns; a sync job's row is then written here too) come from an Idempotency-Key
    (``dataapi.idempotency``); ``respond_async`` runs a sync endpoint as an async job (``Prefer:
    respond-async``: the caller waits for it a while, then polls). ``read_only`` (a preparation on the event loop)
    raises ``WouldWrite`` instead of writing a job row."""
    check_body(body)
    endpoint = executable_endpoint(conn, caller.company_id, namespace, slug)
    if endpoint is None:
        raise EndpointNotFound()
    share = effective_share_context(conn, caller.company_id, caller.user_id, caller.api_key_id, endpoint.id)
    specs = specs_of(endpoint)
    try:
        params = coerce(specs, body.get("parameter_values"), share)
    except ParamError as e:
        raise Invalid(e.message, code="INVALID_PARAMETER") from None
    continued = respond_async and endpoint.execution_mode == ExecutionMode.SYNC
    mode = ExecutionMode.ASYNC if continued else endpoint.execution_mode
    sync = mode == ExecutionMode.SYNC
    callback = body.get("callback_url") if not sync else None
    inp = QueryInput(
        job_id=job_id or secrets.token_hex(12), company_id=caller.company_id, company_slug=caller.company_slug,
        endpoint_id=endpoint.id, endpoint=f"{namespace}/{slug}", sql=endpoint.sql,
        param_specs=[s.to_dict() for s in specs], params=params,
        max_rows=min(endpoint.max_rows, settings.max_rows_cap), mode=mode,
        timeout_seconds=settings.sync_timeout_seconds if sync else settings.async_timeout_seconds,
        user_id=caller.user_id, api_key_id=caller.api_key_id,
        callback_url=check_callback(callback, settings.callback_allow_cidrs, settings.callback_allow_hosts)
        if callback is not None else None,
        heartbeat_seconds=settings.query_heartbeat_seconds,
        deadline=time.time() + settings.sync_timeout_seconds if sync else None,
        callback_task_queue=settings.task_queue_callbacks,
        callback_schedule_seconds=list(settings.callback_schedule_seconds),
        callback_jitter=settings.callback_jitter,
        # An export (every row stored) runs on the worker processes, never a first attempt in the API's.
        local_budget_seconds=0.0 if sync or endpoint.export_max_rows else settings.async_local_budget_seconds,
        store_rows=not sync,  # an async job's result is read in any format and paged (dataapi.data_api.results)
        rows_limit=min(endpoint.export_max_rows, settings.export_max_rows_cap)
        if endpoint.export_max_rows and not sync else 0,
        cache_seconds=endpoint.cache_seconds if sync else 0,  # async stays uncached (docs/decisions.md)
        continued=continued,
        attributes_on_close=settings.sync_search_attributes if sync else "",
    )
    if not sync or row is not None:
        if read_only:
            raise WouldWrite()
        jobs.create_job(conn, id=inp.job_id, company_id=inp.company_id, endpoint_id=inp.endpoint_id,
                        mode=mode, parameters=json.dumps(params), callback_url=inp.callback_url,
                        user_id=inp.user_id, api_key_id=inp.api_key_id, **(row or {}))
    return inp


def fail_unstarted(conn: Connection, job_id: str) -> None:
    """The workflow of an async job could not be started: its row must not stay ``processing``."""
    jobs.finish_job(conn, job_id, status=JobStatus.FAILED, error="Job could not be started")


def check_outcome(out: QueryOutput, job_id: str, sync_timeout_seconds: float) -> None:
    """Raises the contract's error for a sync execution's outcome that is not a result."""
    if out.status == QueryStatus.COMPLETED:
        return
    if out.error_type == "ExecutionTimeout":
        raise ExecutionTimeout(f"Query exceeded the {sync_timeout_seconds:g}s timeout (use async mode)")
    if out.error_type == "ExecutionError":
        raise DomainError(out.error or "Query execution failed", status=500, code="EXECUTION_ERROR")
    if out.error_type in REFUSALS:
        raise Invalid(out.error or "The query was refused", code=REFUSALS[out.error_type])
    log.error("sync job %s failed: %s (%s)", job_id, out.error, out.error_type)
    raise DomainError("Internal error during query execution", status=500, code="INTERNAL_ERROR")


def job_of(session: Session, caller: Caller, namespace: str, slug: str, job_id: str) -> Job:
    """The caller's job of this endpoint, or the contract's 404s (another company's job is just missing)."""
    endpoint = find_endpoint(session, caller.company_id, namespace, slug)
    if endpoint is None:
        raise EndpointNotFound()
    job = jobs.find_job(session, caller.company_id, pk(endpoint), job_id) if JOB_ID_RE.match(job_id) else None
    if job is None:
        raise JobNotFound()
    return job


def redelivery(job: Job, settings: Settings) -> CallbackInput:
    """A new delivery (a new webhook-id) of a finished job's result to its callback URL."""
    if not job.callback_url:
        raise Conflict("The job was submitted without a callback_url", code="NO_CALLBACK_URL")
    if job.status == JobStatus.PROCESSING:
        raise Conflict("The job has not finished yet; its callback will follow", code="JOB_NOT_FINISHED")
    return CallbackInput("msg_" + secrets.token_hex(12), job.id, list(settings.callback_schedule_seconds),
                         settings.callback_jitter)
