"""Builds and runs the Temporal worker: task queue, workflows, activities and their resources."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.duck import CompanyDatabases
from activities.query import QueryActivities
from dataapi import temporal
from dataapi.artifacts import LocalArtifactStore
from dataapi.db import make_engine
from dataapi.settings import Settings
from workflows.query import QueryWorkflow

log = logging.getLogger("dataapi.worker")


def build_query_worker(client: Client, settings: Settings, task_queue: str | None = None) -> Worker:
    """The worker for visualization-endpoint executions (sync and async share one task queue)."""
    executor = ThreadPoolExecutor(max_workers=settings.query_workers + 2, thread_name_prefix="query")
    acts = QueryActivities(
        engine=make_engine(settings.resolved_database_url),
        databases=CompanyDatabases(settings.resolved_data_dir, settings.query_memory_limit, settings.query_threads),
        artifacts=LocalArtifactStore(settings.resolved_artifact_dir),
        executor=executor,
    )
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue_queries,
        workflows=[QueryWorkflow],
        activities=[acts.run_query, acts.finish_failed],
        max_concurrent_activities=settings.query_workers,
        max_concurrent_local_activities=settings.query_workers,
    )


async def run_worker(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    client = await temporal.connect(settings)
    worker = build_query_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker polling %s on %s", settings.task_queue_queries, settings.temporal_address)
        await stop.wait()
