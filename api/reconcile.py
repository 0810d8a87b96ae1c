"""Both APIs check a job the store still shows as ``processing`` against Temporal when it is read, so that no
job stays "processing" forever: a workflow that closed without recording an outcome (terminated or cancelled
from the UI, timed out) makes the job failed with the reason, and so does a workflow Temporal does not have a
minute after the job was created (lost before it started, or in a restore of Temporal's database)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.context import AppContext
from dataapi.db import session_scope
from dataapi.models import Job, RepoJob, as_utc, utcnow

J = TypeVar("J", Job, RepoJob)  # a job row of either API
LOST_AFTER = timedelta(seconds=60)  # a job row is written just before its workflow starts
LOST = "Job was lost before it started"
CLOSED_AS_FAILED = {
    WorkflowExecutionStatus.FAILED: "Job failed",
    WorkflowExecutionStatus.CANCELED: "Job was cancelled",
    WorkflowExecutionStatus.TERMINATED: "Job was terminated by an operator",
    WorkflowExecutionStatus.TIMED_OUT: "Job timed out",
}
_OPEN = (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW)
# Polls are cheap for us and for Temporal: a job younger than this is not checked (it has barely started), and
# a job whose workflow was seen running is not checked again for this long (one describe per job and interval,
# however often it is polled). A workflow closed from the UI reads as failed within that delay.
CHECK_AFTER = timedelta(seconds=2)
RECHECK_SECONDS = 2.0
_seen_running: OrderedDict[str, float] = OrderedDict()  # job id -> monotonic time of the last check
_SEEN_MAX = 10_000


def _recently_seen_running(job_id: str) -> bool:
    at = _seen_running.get(job_id)
    return at is not None and time.monotonic() - at < RECHECK_SECONDS


def _saw_running(job_id: str) -> None:
    _seen_running[job_id] = time.monotonic()
    _seen_running.move_to_end(job_id)
    while len(_seen_running) > _SEEN_MAX:
        _seen_running.popitem(last=False)


async def reconcile(ctx: AppContext, job: J, fail: Callable[[Session, str, str], None]) -> J:
    """``job`` (a row still ``processing``) as it should read: unchanged while its workflow runs or Temporal does
    not answer; otherwise read again from the store, after ``fail(session, job_id, reason)`` recorded the failure
    when the workflow did not complete (a completed one recorded its outcome before closing)."""
    if utcnow() - as_utc(job.created_at) < CHECK_AFTER or _recently_seen_running(job.id):
        return job
    client = await ctx.temporal()
    try:
        status = (await client.get_workflow_handle(job.id).describe()).status
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND or utcnow() - as_utc(job.created_at) < LOST_AFTER:
            return job
        status = None
    if status in _OPEN:
        _saw_running(job.id)
        return job
    _seen_running.pop(job.id, None)
    reason = LOST if status is None else CLOSED_AS_FAILED.get(status)

    def record() -> J:
        with session_scope(ctx.engine) as session:
            if reason is not None:
                fail(session, job.id, reason)
            fresh = session.get(type(job), job.id)
            return fresh if fresh is not None else job  # job rows are never deleted; nothing newer to read

    return await run_in_threadpool(record)
