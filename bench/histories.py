"""Where a sync execution's time goes, read from the Temporal histories of our side's concurrency-1 requests:
the wait for a worker to pick up the workflow task, and the worker's own work (the workflow code and the
local activity that runs DuckDB and stores the result). The rest of the client's latency is the API (auth,
store reads, starting the workflow, waiting for its result, reading the artifact) and HTTP."""

from __future__ import annotations

from datetime import datetime

from temporalio.api.enums.v1 import EventType

from bench.load import latency_stats
from dataapi import temporal
from dataapi.settings import Settings

_STARTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def sync_phases(settings: Settings, endpoint: str, since: datetime, until: datetime, limit: int = 100) -> dict:
    """Medians of the phases of the sync workflows of ``endpoint`` started between ``since`` and ``until`` (UTC)."""
    client = await temporal.connect(settings)
    query = (f"DataApiEndpoint = '{endpoint}' AND DataApiMode = 'sync' AND "
             f"StartTime >= '{_stamp(since)}' AND StartTime <= '{_stamp(until)}'")
    pickup, worker, total = [], [], []
    async for wf in client.list_workflows(query, limit=limit):
        first: dict[int, float] = {}
        for e in (await client.get_workflow_handle(wf.id).fetch_history()).events:
            first.setdefault(e.event_type, e.event_time.ToDatetime().timestamp())
        if {_STARTED, _TASK_STARTED, _COMPLETED} <= first.keys():
            pickup.append(first[_TASK_STARTED] - first[_STARTED])
            worker.append(first[_COMPLETED] - first[_TASK_STARTED])
            total.append(first[_COMPLETED] - first[_STARTED])
    return {"workflows": len(total), "task_pickup": latency_stats(pickup), "worker": latency_stats(worker),
            "workflow_total": latency_stats(total)}
