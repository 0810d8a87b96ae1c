"""The closed sets of words the APIs answer with and the store keeps: job statuses, callback delivery statuses
and attempt outcomes, execution modes and runner kinds.

Each is a ``StrEnum``: a member is the ``str`` it stands for, so it compares equal to the text read back from the
store or from a workflow payload, and orjson, ``json``, SQLite and psycopg write it as that text. Rows and
Temporal messages keep ``str`` fields: recorded histories and stored rows read back unchanged.

No imports beyond the standard library: workflows, models and messages can all use this module.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A Data API job (``jobs.status``); a finished job its caller deleted is kept as a row that no one sees."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


class QueryStatus(StrEnum):
    """What a query activity reports (``QueryOutput.status``): the job's outcome, or ``unfinished`` when an async
    job's local attempt ran out of its budget and recorded nothing (the job goes on as a regular activity)."""

    COMPLETED = "completed"
    FAILED = "failed"
    UNFINISHED = "unfinished"


class RepoJobStatus(StrEnum):
    """A Jobs API job (``repo_jobs.status``); a deleted job is kept as a row that no one sees."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


class DeliveryStatus(StrEnum):
    """A callback delivery (``callback_deliveries.status``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AttemptOutcome(StrEnum):
    """One delivery attempt (``callback_attempts.outcome``): 2xx, try again, 410 (stop), unsafe URL (stop)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"
    REFUSED = "refused"


class ExecutionMode(StrEnum):
    """How an endpoint runs: the answer in the response, or a job to poll (and a callback)."""

    SYNC = "sync"
    ASYNC = "async"


class Runner(StrEnum):
    """The kind of a Jobs API repository's code."""

    PYTHON = "python"
    SQL = "sql"


class UserKind(StrEnum):
    INTEGRATION = "integration"  # signs in with API keys
    HUMAN = "human"
