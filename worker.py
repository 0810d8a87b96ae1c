"""Builds and runs the Temporal workers: task queues, workflows, activities and their resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.callbacks import CallbackActivities
from activities.duck.databases import CompanyDatabases
from activities.jobs import JobActivities
from activities.prune import PruneActivities
from activities.query import QueryActivities, RunningQuery
from activities.runners import RunLimits
from activities.sandbox import Sandbox
from dataapi import heap, temporal
from dataapi.callbacks.secrets import SecretBox
from dataapi.db import make_engine
from dataapi.logs import configure as configure_logging
from dataapi.messages import QueryInput
from dataapi.secrets import secret_key
from dataapi.settings import Settings
from dataapi.storage.factory import store_from_settings
from dataapi.sync import SyncLane
from workflows.callback import CallbackWorkflow
from workflows.job import RepositoryJobWorkflow
from workflows.prune import PruneWorkflow
from workflows.query import QueryWorkflow

log = logging.getLogger("dataapi.worker")
QUEUES = ("queries", "jobs", "callbacks")


def query_activities(settings: Settings, lane: SyncLane | None = None) -> QueryActivities:
    """The query activities and their resources; ``lane``: the sync lane they report to (the API's)."""
    return QueryActivities(
        engine=make_engine(settings.resolved_database_url),
        databases=CompanyDatabases(settings.resolved_data_dir, settings.query_memory_limit, settings.query_threads,
                                   settings.max_result_bytes),
        artifacts=store_from_settings(settings),
        executor=ThreadPoolExecutor(max_workers=settings.query_workers + 2, thread_name_prefix="query"),
        query_slots=settings.query_concurrency or os.cpu_count() or 1,
        lane=lane,
    )


LOCAL_ACTIVITIES_PER_QUERY_WORKER = 4  # local activity slots per query_workers (sync_concurrency_per_company: 2)


def build_query_worker(client: Client, settings: Settings, in_api: bool = False,
                       acts: QueryActivities | None = None) -> Worker:
    """Visualization-endpoint executions: sync and async share the queries task queue.

    ``in_api``: the worker the API process hosts so that sync executions start eagerly (their first workflow
    task and the query, a local activity, run in the process that waits for them). It takes no remote
    activities: an async query runs there only as its local attempt (``async_local_budget_seconds``), then on
    the worker processes. ``acts``: its activities, e.g. ones that report to the API's sync lane
    (``query_activities(settings, lane)``)."""
    acts = acts or query_activities(settings)
    return Worker(
        client, task_queue=settings.task_queue_queries, workflows=[QueryWorkflow],
        activities=[acts.run_query, acts.finish_failed],
        # A sync query's local activity mostly waits (for its turn at DuckDB's fair slots, for the store): many
        # may wait at once, so that a company's calls in flight never leave another's without a slot.
        max_concurrent_activities=settings.query_workers,
        max_concurrent_local_activities=LOCAL_ACTIVITIES_PER_QUERY_WORKER * settings.query_workers,
        no_remote_activities=in_api, workflow_runner=temporal.QUERY_WORKFLOW_RUNNER,
        # QueryWorkflow's activations are short and never block (they await local activities and a child's
        # start): one thread runs them in turn, with the SDK's deadlock detection, instead of a pool of up to
        # 500 threads contending for the GIL with the requests that wait for them.
        workflow_task_executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-workflow"),
    )


def build_callback_worker(client: Client, settings: Settings) -> Worker:
    """Callback deliveries: a queue of their own so that slow receivers never hold up queries."""
    acts = CallbackActivities(
        settings=settings, engine=make_engine(settings.resolved_database_url),
        artifacts=store_from_settings(settings), box=SecretBox(secret_key(settings)),
        executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="callback"),
    )
    prune = PruneActivities(settings, acts.engine, acts.artifacts, acts.executor)  # the prune schedule's records
    return Worker(client, task_queue=settings.task_queue_callbacks, workflows=[CallbackWorkflow, PruneWorkflow],
                  activities=[acts.deliver_callback, prune.prune_records], max_concurrent_activities=50,
                  workflow_runner=temporal.WORKFLOW_RUNNER)


def build_job_worker(client: Client, settings: Settings) -> Worker:
    """Repository jobs: long runs, each in its own sandbox, on a queue of their own. Loads no JWT keyset and
    no secret key (tests/integration/activities/test_sandbox.py checks it): a job worker has no use for them."""
    acts = JobActivities(
        engine=make_engine(settings.resolved_database_url),
        artifacts=store_from_settings(settings), work_dir=settings.var_dir / "work",
        executor=ThreadPoolExecutor(max_workers=settings.job_workers * 2 + 2, thread_name_prefix="job"),
        limits=RunLimits(max_output_bytes=settings.job_max_output_bytes, max_processes=settings.job_max_processes,
                         max_open_files=settings.job_max_open_files, tmp_bytes=settings.job_tmp_bytes),
        sandbox=Sandbox(bwrap=settings.job_bwrap_path, unsandboxed=settings.unsandboxed_jobs),
    )
    prune = PruneActivities(settings, acts.engine, acts.artifacts, acts.executor, acts.work_dir)  # leftover folders
    return Worker(client, task_queue=settings.task_queue_jobs, workflows=[RepositoryJobWorkflow],
                  activities=[acts.run_repository_job, acts.fail_repository_job, prune.prune_work_folders],
                  max_concurrent_activities=settings.job_workers, workflow_runner=temporal.WORKFLOW_RUNNER)


def embedded_query_worker(client: Client, settings: Settings,
                          lane: SyncLane) -> tuple[Worker, Callable[[QueryInput], RunningQuery]]:
    """The query worker the API process hosts (``create_app(query_worker=embedded_query_worker)``, as
    ``dataapi api`` passes it): its activities report to the API's sync lane, which starts sync queries with
    their ``start_query`` while the worker runs."""
    acts = query_activities(settings, lane)
    return build_query_worker(client, settings, in_api=True, acts=acts), acts.start_query


BUILDERS = {"queries": build_query_worker, "callbacks": build_callback_worker, "jobs": build_job_worker}


def metrics_runtime(settings: Settings) -> Runtime | None:
    """With a metrics port, the SDK serves Prometheus metrics: its own (task latencies, slots, polls) and ours
    (created through the activities' metric meter, e.g. dataapi_callback_attempts). The SDK's server has no
    authentication: it listens on DATAAPI_WORKER_METRICS_HOST (loopback unless a deployment opens it)."""
    if not settings.worker_metrics_port:
        return None
    host = settings.worker_metrics_host
    bind = f"[{host}]:{settings.worker_metrics_port}" if ":" in host else f"{host}:{settings.worker_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))


async def run_worker(settings: Settings, queues: tuple[str, ...] = QUEUES) -> None:
    configure_logging(settings.log_level, settings.log_format)
    client = await temporal.connect(settings, runtime=metrics_runtime(settings))
    workers = [BUILDERS[q](client, settings) for q in queues]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        log.info("worker polling %s on %s", ", ".join(queues), settings.temporal_address)
        heap.settle()
        await stop.wait()
