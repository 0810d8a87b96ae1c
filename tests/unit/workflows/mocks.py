"""Mocked activities: registered under the real activities' names, they record every call with its activity
info (timeouts, attempt, local or not) and answer as a test scripts them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy

# Answers that never end: HANG heartbeats (a regular activity learns of its cancellation through a heartbeat),
# SILENT does not (its heartbeat timeout expires). A test whose activity times out runs on a test server of its
# own (``own_temporal``): the test server keeps its clock held by an activity that timed out, for good.
HANG = "hang"
SILENT = "silent"


@dataclass
class Call:
    name: str
    input: Any
    info: activity.Info


class Script:
    """The answers of one mocked activity, one per call; the last one repeats. An answer is the value to
    return, an exception to raise, ``HANG`` or ``SILENT``."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.started = asyncio.Event()

    async def answer(self) -> Any:
        reply = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.started.set()
        if isinstance(reply, BaseException):
            raise reply
        while reply in (HANG, SILENT):
            if reply == HANG and not activity.info().is_local:
                activity.heartbeat()
            await asyncio.sleep(0.05)
        return reply


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def record(self, name: str, inp: Any) -> None:
        self.calls.append(Call(name, inp, activity.info()))

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


async def child_starts(client: Client, handle: WorkflowHandle, input_type: type) -> list[dict]:
    """The children a workflow started, as its history records the commands (inputs decoded as ``input_type``)."""
    starts = []
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            continue
        attrs = event.start_child_workflow_execution_initiated_event_attributes
        starts.append({"workflow_id": attrs.workflow_id, "workflow_type": attrs.workflow_type.name,
                       "task_queue": attrs.task_queue.name, "parent_close_policy": attrs.parent_close_policy,
                       "input": await client.data_converter.decode(attrs.input.payloads, [input_type])})
    return starts


async def scheduled_retry_policies(handle: WorkflowHandle) -> dict[str, list[RetryPolicy]]:
    """The retry policy of every regular activity a workflow scheduled, by activity name, as the server got it
    (the test server leaves it out of the activity's info)."""
    policies: dict[str, list[RetryPolicy]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            policies.setdefault(attrs.activity_type.name, []).append(RetryPolicy.from_proto(attrs.retry_policy))
    return policies


async def outcome(handle: WorkflowHandle) -> Any:
    """A workflow's result, or its failure's cause; a test that would wait forever fails instead."""
    try:
        async with asyncio.timeout(30):
            return await handle.result()
    except WorkflowFailureError as e:
        return e.cause
