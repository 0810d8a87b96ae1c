"""RepositoryJobWorkflow, branch by branch, with ``run_repository_job`` and ``fail_repository_job`` mocked."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from dataapi.messages import JobFailure, JobInput, JobOutput
from tests.unit.workflows.mocks import HANG, SILENT, Recorder, Script, outcome, scheduled_retry_policies
from workflows.job import RepositoryJobWorkflow


def job(**changes) -> JobInput:
    fields = {"job_id": str(uuid.uuid4()), "company_slug": "acme", "prefix": "jobs/acme/j", "inputs": ["a.csv"],
              "time_limit_seconds": 60.0, "memory_bytes": 1 << 30, "heartbeat_seconds": 10.0}
    return JobInput(**{**fields, **changes})


class Activities(Recorder):
    def __init__(self, run: Script):
        super().__init__()
        self.run = run

    @activity.defn(name="run_repository_job")
    async def run_repository_job(self, inp: JobInput) -> JobOutput:
        self.record("run_repository_job", inp)
        return await self.run.answer()

    @activity.defn(name="fail_repository_job")
    async def fail_repository_job(self, inp: JobFailure) -> None:
        self.record("fail_repository_job", inp)

    def worker(self, client: Client, task_queue: str) -> Worker:
        return Worker(client, task_queue=task_queue, workflows=[RepositoryJobWorkflow],
                      activities=[self.run_repository_job, self.fail_repository_job])


async def run(client: Client, task_queue: str, acts: Activities, inp: JobInput):
    """Runs the workflow to its end; returns its result or its failure's cause."""
    async with acts.worker(client, task_queue):
        handle = await client.start_workflow(RepositoryJobWorkflow.run, inp, id=inp.job_id, task_queue=task_queue)
        return await outcome(handle)


def assert_failed(cause, message: str, error_type: str) -> None:
    assert isinstance(cause, ApplicationError)
    assert (cause.message, cause.type, cause.non_retryable) == (message, error_type, True)


def assert_recorded_failure(acts: Activities, inp: JobInput, error: str) -> None:
    [fail] = acts.of("fail_repository_job")
    assert fail.input == JobFailure(inp.job_id, error)
    assert fail.info.is_local and fail.info.start_to_close_timeout == timedelta(seconds=30)


async def test_completed(temporal, task_queue):
    acts, inp = Activities(Script(JobOutput("completed"))), job(time_limit_seconds=120.0, heartbeat_seconds=7.0)
    assert await run(temporal, task_queue, acts, inp) == JobOutput("completed")
    [call] = acts.of("run_repository_job")
    assert call.input == inp and not call.info.is_local
    assert call.info.start_to_close_timeout == timedelta(seconds=420)  # the time limit and room to pack and store
    assert call.info.heartbeat_timeout == timedelta(seconds=7)
    policies = await scheduled_retry_policies(temporal.get_workflow_handle(inp.job_id))
    assert policies == {"run_repository_job": [RetryPolicy(  # the server's default maximum interval
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=100), maximum_attempts=2)]}
    assert acts.of("fail_repository_job") == []


@pytest.mark.parametrize(("output", "message"), [(JobOutput("failed", "exit status 3"), "exit status 3"),
                                                 (JobOutput("failed"), "Job failed")])
async def test_job_failed(temporal, task_queue, output, message):
    """The activity recorded the job's own failure: the workflow fails with it and records nothing."""
    acts = Activities(Script(output))
    assert_failed(await run(temporal, task_queue, acts, job()), message, "JobFailed")
    assert len(acts.of("run_repository_job")) == 1 and acts.of("fail_repository_job") == []


async def test_platform_error_is_retried(temporal, task_queue):
    acts = Activities(Script(RuntimeError("worker lost its disk"), JobOutput("completed")))
    assert await run(temporal, task_queue, acts, job()) == JobOutput("completed")
    assert [c.info.attempt for c in acts.of("run_repository_job")] == [1, 2]
    assert acts.of("fail_repository_job") == []


async def test_retries_exhausted_are_recorded(temporal, task_queue):
    acts, inp = Activities(Script(RuntimeError("worker lost its disk"))), job()
    assert_failed(await run(temporal, task_queue, acts, inp), "Job failed on the platform", "PlatformError")
    assert [c.info.attempt for c in acts.of("run_repository_job")] == [1, 2]
    assert_recorded_failure(acts, inp, "Job failed on the platform")


async def test_lost_worker_is_recorded(own_temporal, task_queue):
    """Both attempts stop heartbeating (their worker is gone): the workflow records the failure."""
    acts, inp = Activities(Script(SILENT)), job(heartbeat_seconds=0.3)
    assert_failed(await run(own_temporal, task_queue, acts, inp), "Job failed on the platform", "PlatformError")
    assert [c.info.attempt for c in acts.of("run_repository_job")] == [1, 2]
    assert_recorded_failure(acts, inp, "Job failed on the platform")


async def test_cancelled_is_recorded(temporal, task_queue):
    """A job deleted while it runs is cancelled (``DELETE /jobs/{id}``): the workflow records it."""
    acts, inp = Activities(Script(HANG)), job()
    async with acts.worker(temporal, task_queue):
        handle = await temporal.start_workflow(RepositoryJobWorkflow.run, inp, id=inp.job_id,
                                               task_queue=task_queue, task_timeout=timedelta(seconds=1))
        await acts.run.started.wait()
        await handle.cancel()
        cause = await outcome(handle)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert isinstance(cause, CancelledError)
    assert_recorded_failure(acts, inp, "Job cancelled")
