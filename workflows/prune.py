"""Prunes what has expired (dataapi/retention.py): started by the Temporal Schedule ``prune_schedule_id`` that
``dataapi temporal setup`` and the embedded stack create, every ``prune_interval_seconds``.

The records and artifacts first (the callbacks queue), then the job folders of a jobs worker (the jobs queue).
A jobs queue without a free worker within its schedule-to-start timeout skips the folders of this run: they
are only leftovers of killed workers, and the next run takes them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.prune_defs import PRUNE_RECORDS, PRUNE_WORK_FOLDERS
    from dataapi.retention import PruneCounts, PruneInput

_RECORDS_TIMEOUT, _HEARTBEAT = timedelta(hours=1), timedelta(seconds=60)
_FOLDERS_WAIT, _FOLDERS_TIMEOUT = timedelta(minutes=10), timedelta(minutes=5)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1),
                     maximum_attempts=5)


@workflow.defn(name="PruneWorkflow")
class PruneWorkflow:
    @workflow.run
    async def run(self, inp: PruneInput) -> PruneCounts:
        counts: PruneCounts = await workflow.execute_activity(
            PRUNE_RECORDS, inp, result_type=PruneCounts, start_to_close_timeout=_RECORDS_TIMEOUT,
            heartbeat_timeout=_HEARTBEAT, retry_policy=_RETRY)
        try:
            folders: PruneCounts = await workflow.execute_activity(
                PRUNE_WORK_FOLDERS, inp, result_type=PruneCounts, task_queue=inp.jobs_task_queue,
                schedule_to_start_timeout=_FOLDERS_WAIT, start_to_close_timeout=_FOLDERS_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1))
            counts.work_folders = folders.work_folders
        except ActivityError as e:
            workflow.logger.warning("job folders not pruned in this run: %s", e.cause or e)
        return counts
