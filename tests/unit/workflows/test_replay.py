"""Determinism: every recorded history (tests/histories, written by ``python -m tests.record_histories``) replays
against today's workflow code. A change that alters the commands a workflow issues for a recorded history fails
here, before it can break the workflows running in production; such a change needs ``workflow.patched``."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from dataapi.codec import new_keyset
from dataapi.converter import data_converter
from dataapi.messages import CallbackInput
from dataapi.settings import Settings
from tests.record_histories import CLOSED_AS, HISTORIES, SCENARIOS
from workflows.callback import CallbackWorkflow
from workflows.job import RepositoryJobWorkflow
from workflows.prune import PruneWorkflow
from workflows.query import QueryWorkflow

# Replayed under the default sandbox: QueryWorkflow, which production runs unsandboxed for speed, still has
# its clock, random and I/O calls checked here.
WORKFLOWS = [QueryWorkflow, CallbackWorkflow, RepositoryJobWorkflow, PruneWorkflow]
# Through the project's converter, payload codec included: the recorded histories are plaintext (written before
# encryption, or with it off) and must keep decoding through it unchanged.
CONVERTER = data_converter(Settings(payload_keyset=json.dumps(new_keyset())))
_CLOSED_EVENT = {"COMPLETED": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
                 "FAILED": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
                 "CANCELED": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED}


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{name}", (HISTORIES / f"{name}.json").read_text())


def test_every_scenario_has_a_fixture():
    assert sorted(p.stem for p in HISTORIES.glob("*.json")) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_history_replays_without_nondeterminism(name):
    recorded = history(name)
    # The fixture still shows the path it was recorded for (a re-recording that took another path fails here).
    assert recorded.events[-1].event_type == _CLOSED_EVENT[CLOSED_AS[name]]
    result = await Replayer(workflows=WORKFLOWS, data_converter=CONVERTER).replay_workflow(
        recorded, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}: {result.replay_failure!r}"


def test_the_paths_are_the_interesting_ones():
    """The histories hold what they were recorded for: the callback child, retries, a local activity..."""
    def types(name: str) -> list[str]:
        events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
        return [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]

    assert "START_CHILD_WORKFLOW_EXECUTION_INITIATED" in types("query_async_completed_callback")
    assert "START_CHILD_WORKFLOW_EXECUTION_INITIATED" in types("query_async_cancelled")
    assert "MARKER_RECORDED" in types("query_sync_completed")  # the sync query is a local activity
    # Recorded before async queries tried a local activity first: still replayed on the regular activity alone.
    assert "MARKER_RECORDED" not in types("query_async_completed_callback")
    assert "MARKER_RECORDED" in types("query_async_local_completed")
    assert "ACTIVITY_TASK_SCHEDULED" not in types("query_async_local_completed")
    outran = types("query_async_local_outran")
    assert outran.index("MARKER_RECORDED") < outran.index("ACTIVITY_TASK_SCHEDULED")
    assert types("callback_delivered_after_retries").count("ACTIVITY_TASK_SCHEDULED") == 2
    assert "TIMER_STARTED" in types("callback_delivered_after_retries")
    assert types("callback_gone").count("ACTIVITY_TASK_SCHEDULED") == 1
    assert "ACTIVITY_TASK_CANCEL_REQUESTED" in types("job_cancelled")
    assert types("prune_completed").count("ACTIVITY_TASK_SCHEDULED") == 2  # the records, then a worker's folders


# --- the check bites: a workflow changed in a non-deterministic way fails the replay -----------------------

@workflow.defn(name="CallbackWorkflow", sandboxed=False)
class ReorderedCallbackWorkflow:
    """CallbackWorkflow as a careless change might leave it: another activity scheduled before the first
    delivery attempt."""

    @workflow.run
    async def run(self, inp: CallbackInput) -> str:
        await workflow.execute_activity("audit_delivery", inp.delivery_id, start_to_close_timeout=timedelta(seconds=5))
        return "delivered"


async def test_a_non_deterministic_change_fails_the_replay():
    with pytest.raises(workflow.NondeterminismError):
        await Replayer(workflows=[ReorderedCallbackWorkflow]).replay_workflow(
            history("callback_delivered_after_retries"))
