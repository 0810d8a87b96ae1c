"""One repository job (Jobs API). The workflow id is the job id (a UUID).

The run is one heartbeating activity (stage → run → pack → persist) because its steps share a local job
folder; what must survive a worker lives in the artifact store, so a retry on another worker starts over.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.job_defs import FAIL_REPOSITORY_JOB, RUN_REPOSITORY_JOB
    from dataapi.messages import JobFailure, JobInput, JobOutput
    from dataapi.statuses import RepoJobStatus

_RECORD_TIMEOUT = timedelta(seconds=30)
_RECORD_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10)


@workflow.defn(name="RepositoryJobWorkflow")
class RepositoryJobWorkflow:
    @workflow.run
    async def run(self, inp: JobInput) -> JobOutput:
        try:
            out = await workflow.execute_activity(
                RUN_REPOSITORY_JOB, inp, result_type=JobOutput,
                start_to_close_timeout=timedelta(seconds=inp.time_limit_seconds + 300),
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_seconds),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2))
        except (asyncio.CancelledError, ActivityError) as e:
            cancelled = isinstance(e, asyncio.CancelledError) or isinstance(e.cause, CancelledError)
            error = "Job cancelled" if cancelled else "Job failed on the platform"
            await workflow.execute_local_activity(
                FAIL_REPOSITORY_JOB, JobFailure(inp.job_id, error),
                start_to_close_timeout=_RECORD_TIMEOUT, retry_policy=_RECORD_RETRY)
            if cancelled:
                raise asyncio.CancelledError() from e
            raise ApplicationError(error, type="PlatformError", non_retryable=True) from e
        if out.status != RepoJobStatus.COMPLETED:
            raise ApplicationError(out.error or "Job failed", type="JobFailed", non_retryable=True)
        return out
