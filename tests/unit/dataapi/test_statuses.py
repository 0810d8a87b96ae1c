"""The status enums are the wire's and the store's words: their values are pinned, and every writer the project
uses (orjson, json, Temporal's converter, SQLite) writes a member as its plain text."""

import json
import sqlite3

import orjson

from dataapi.converter import DATA_CONVERTER
from dataapi.messages import AttemptOutput, QueryOutput
from dataapi.statuses import (
    AttemptOutcome,
    DeliveryStatus,
    ExecutionMode,
    JobStatus,
    QueryStatus,
    RepoJobStatus,
    Runner,
    UserKind,
)


def test_values_are_the_contracts_words():
    assert [*JobStatus] == ["processing", "completed", "failed", "deleted"]  # deleted: never shown
    assert [*QueryStatus] == ["completed", "failed", "unfinished"]
    assert [*RepoJobStatus] == ["processing", "completed", "failed", "deleted"]
    assert [*DeliveryStatus] == ["pending", "delivered", "failed"]
    assert [*AttemptOutcome] == ["delivered", "retry", "gone", "refused"]
    assert [*ExecutionMode] == ["sync", "async"]
    assert [*Runner] == ["python", "sql"]
    assert [*UserKind] == ["integration", "human"]


def test_a_member_is_written_as_its_text():
    assert orjson.dumps({"status": JobStatus.COMPLETED}) == b'{"status":"completed"}'
    assert json.dumps({"status": JobStatus.COMPLETED}) == '{"status": "completed"}'
    assert f"{RepoJobStatus.FAILED}" == str(RepoJobStatus.FAILED) == "failed"
    with sqlite3.connect(":memory:") as db:
        assert db.execute("SELECT ?", (DeliveryStatus.PENDING,)).fetchone() == ("pending",)


def test_messages_built_with_members_convert_as_with_plain_text():
    """Recorded histories replay: a payload written from a member is byte for byte the one written from text."""
    convert = DATA_CONVERTER.payload_converter.to_payloads
    assert convert([QueryOutput(status=QueryStatus.FAILED, error="x")]) == \
        convert([QueryOutput(status="failed", error="x")])
    assert convert([AttemptOutput(outcome=AttemptOutcome.RETRY)]) == convert([AttemptOutput(outcome="retry")])
    assert convert([DeliveryStatus.FAILED]) == convert(["failed"])
