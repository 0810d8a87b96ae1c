"""The prune activities (dataapi/retention.py): expired results, job rows, callback logs and refresh tokens on
any worker with the store and the artifacts (the callbacks worker), and leftover job folders on a jobs worker."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import shutil
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import Engine
from temporalio import activity

from activities.blocking import BlockingActivities
from activities.prune_defs import PRUNE_RECORDS, PRUNE_WORK_FOLDERS
from dataapi import retention
from dataapi.retention import PruneCounts, PruneInput
from dataapi.settings import Settings
from dataapi.storage.base import ArtifactStore

log = logging.getLogger("dataapi.prune")


class PruneActivities(BlockingActivities):
    """``work_dir``: the job folders of the jobs worker this runs on (None on a worker that runs no jobs)."""

    def __init__(self, settings: Settings, engine: Engine, artifacts: ArtifactStore, executor: Executor,
                 work_dir: Path | None = None):
        self.settings, self.engine, self.artifacts, self.executor = settings, engine, artifacts, executor
        self.work_dir = work_dir

    def _policy(self) -> retention.Policy:
        s = self.settings
        return retention.Policy.of(s.result_retention_seconds, s.tombstone_retention_seconds, s.prune_batch_size)

    @activity.defn(name=PRUNE_RECORDS)
    async def prune_records(self, inp: PruneInput) -> PruneCounts:
        """One pass over everything expired, in batches; heartbeats after each, so a lost worker's pass is
        taken over (and what it had done is not done again)."""
        loop, context = asyncio.get_running_loop(), contextvars.copy_context()

        def beat() -> None:  # from the executor's thread: the SDK heartbeats on the loop, in the activity's context
            loop.call_soon_threadsafe(activity.heartbeat, context=context)

        counts = await self._blocking(retention.prune, self.engine, self.artifacts, self._policy(), beat)
        log.info("pruned %s", asdict(counts))
        return counts

    @activity.defn(name=PRUNE_WORK_FOLDERS)
    async def prune_work_folders(self, inp: PruneInput) -> PruneCounts:
        def remove() -> int:
            if self.work_dir is None:
                return 0
            stale = retention.stale_work_folders(self.engine, self.work_dir)
            for folder in stale:
                shutil.rmtree(folder, ignore_errors=True)
            return len(stale)

        removed = await self._blocking(remove)
        if removed:
            log.info("removed %d leftover job folders from %s", removed, self.work_dir)
        return PruneCounts(work_folders=removed)
