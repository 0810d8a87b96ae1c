"""The prune schedule: a Temporal Schedule that starts PruneWorkflow every ``prune_interval_seconds``, created (or
brought up to date) by ``dataapi temporal setup`` and by the embedded stack, which also sets its namespace's history
retention (docs/operations.md, "Retention")."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import UpdateNamespaceRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from dataapi.retention import PruneInput
from dataapi.settings import Settings
from workflows.prune import PruneWorkflow

# A Temporal namespace keeps closed histories at least a day.
MIN_NAMESPACE_RETENTION = timedelta(days=1)


def prune_schedule(settings: Settings) -> Schedule:
    """Every ``prune_interval_seconds``, a PruneWorkflow on the callbacks queue; a run still going when the next
    is due makes it skip (pruning is idempotent, but two passes at once only compete)."""
    action = ScheduleActionStartWorkflow(
        PruneWorkflow.run, PruneInput(jobs_task_queue=settings.task_queue_jobs),
        id=f"{settings.prune_schedule_id}-run", task_queue=settings.task_queue_callbacks,
        execution_timeout=timedelta(hours=2))
    every = timedelta(seconds=settings.prune_interval_seconds)
    return Schedule(action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every))


async def ensure_prune_schedule(client: Client, settings: Settings) -> bool:
    """Creates the prune schedule, or updates an existing one to these settings (idempotent); True if created."""
    schedule = prune_schedule(settings)
    try:
        await client.create_schedule(settings.prune_schedule_id, schedule)
        return True
    except ScheduleAlreadyRunningError:
        async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(settings.prune_schedule_id).update(replace)
        return False


async def set_namespace_retention(client: Client, settings: Settings) -> timedelta:
    """The embedded stack's namespace keeps closed workflow histories as long as results are kept (at least a
    day). Production clusters set theirs at the namespace (docs/operations.md)."""
    keep = max(MIN_NAMESPACE_RETENTION, timedelta(seconds=settings.result_retention_seconds))
    config = NamespaceConfig()
    config.workflow_execution_retention_ttl.FromTimedelta(keep)
    await client.workflow_service.update_namespace(UpdateNamespaceRequest(  # fields left empty stay as they are
        namespace=settings.temporal_namespace, config=config))
    return keep


async def setup_embedded(settings: Settings) -> None:
    """The embedded stack's retention in Temporal: the prune schedule, and its namespace's history retention."""
    from dataapi import temporal

    client = await temporal.connect(settings)
    await ensure_prune_schedule(client, settings)
    await set_namespace_retention(client, settings)
