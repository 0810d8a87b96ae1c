"""PruneWorkflow's branches with its activities mocked: the records and a jobs worker's folders, and a folder pass
that fails (skipped for the run, the records' counts stand)."""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from dataapi.retention import PruneCounts, PruneInput
from workflows.prune import PruneWorkflow


class Activities:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @activity.defn(name="prune_records")
    async def prune_records(self, inp: PruneInput) -> PruneCounts:
        self.calls.append(("prune_records", activity.info().task_queue))
        return PruneCounts(data_jobs_expired=3, repo_tombstones=1)

    @activity.defn(name="prune_work_folders")
    async def prune_work_folders(self, inp: PruneInput) -> PruneCounts:
        self.calls.append(("prune_work_folders", activity.info().task_queue))
        return PruneCounts(work_folders=2)


async def _run(client: Client, queue: str, jobs_queue: str) -> PruneCounts:
    return await client.execute_workflow(PruneWorkflow.run, PruneInput(jobs_task_queue=jobs_queue),
                                         id=f"prune-{uuid.uuid4().hex[:8]}", task_queue=queue)


async def test_prunes_the_records_then_a_jobs_workers_folders(temporal, task_queue):
    acts, jobs_queue = Activities(), f"{task_queue}-jobs"
    async with Worker(temporal, task_queue=task_queue, workflows=[PruneWorkflow], activities=[acts.prune_records]), \
            Worker(temporal, task_queue=jobs_queue, activities=[acts.prune_work_folders]):
        counts = await _run(temporal, task_queue, jobs_queue)
    assert counts == PruneCounts(data_jobs_expired=3, repo_tombstones=1, work_folders=2)
    assert acts.calls == [("prune_records", task_queue), ("prune_work_folders", jobs_queue)]


async def test_folders_that_fail_are_skipped_for_the_run(temporal, task_queue):
    """A jobs worker whose folder pass fails (a full disk, say; equally a queue no worker took within the
    schedule-to-start timeout): the run still ends with the records' counts, and the next run tries again."""
    acts, jobs_queue = Activities(), f"{task_queue}-jobs"

    @activity.defn(name="prune_work_folders")
    async def failing(inp: PruneInput) -> PruneCounts:
        acts.calls.append(("prune_work_folders", activity.info().task_queue))
        raise OSError("No space left on device")

    async with Worker(temporal, task_queue=task_queue, workflows=[PruneWorkflow], activities=[acts.prune_records]), \
            Worker(temporal, task_queue=jobs_queue, activities=[failing]):
        counts = await _run(temporal, task_queue, jobs_queue)
    assert counts == PruneCounts(data_jobs_expired=3, repo_tombstones=1)
    assert acts.calls == [("prune_records", task_queue), ("prune_work_folders", jobs_queue)]  # one attempt
