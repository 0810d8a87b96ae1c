"""The dataclasses that travel through Temporal: one in, one out, for every workflow and activity.
Fields may be added (with defaults) without breaking recorded histories.

No ``from __future__ import annotations`` here: Temporal's converter calls ``typing.get_type_hints`` on every
conversion, and string annotations would be compiled again each time, on every message. QueryInput and
QueryOutput, converted on every sync call, take the shorter path of ``dataapi.converter``; its field checks
take the flat field types used here (a primitive, a list or dict, or one of them ``| None``)."""

from dataclasses import dataclass, field


@dataclass
class QueryInput:
    job_id: str
    company_id: int
    company_slug: str
    endpoint_id: int
    endpoint: str  # namespace/slug, for logs and search attributes
    sql: str
    param_specs: list[dict]
    params: dict  # canonical, JSON-safe values (dataapi.data_api.param_values.coerce)
    max_rows: int
    mode: str  # sync | async
    timeout_seconds: float
    user_id: int | None = None
    api_key_id: int | None = None
    callback_url: str | None = None
    heartbeat_seconds: float = 10.0
    deadline: float | None = None  # epoch seconds; sync queries are interrupted by the activity at this time
    callback_task_queue: str = ""
    callback_schedule_seconds: list[float] = field(default_factory=list)
    callback_jitter: float = 0.1
    local_budget_seconds: float = 0.0  # async: run first as a local activity that gives up after this long
    store_rows: bool = False  # also store every row (up to rows_limit) as Parquet, for other formats and paging
    rows_limit: int = 0  # async export endpoints: the most rows stored (export_max_rows); else max_rows
    cache_seconds: int = 0  # sync: how long the result cache may answer with this result (0: not cached)
    continued: bool = False  # a sync endpoint run as an async job (Prefer: respond-async): the async limit
    # Sync executions start without search attributes; the workflow sets them as its query ends: on every one
    # ("all") or on those that did not complete ("failures"), as DATAAPI_SYNC_SEARCH_ATTRIBUTES says. Empty in
    # inputs from before this field (attributes on the start): their workflows replay as they ran.
    attributes_on_close: str = ""


@dataclass
class QueryOutput:
    status: str  # completed | failed | unfinished (a local attempt out of budget: nothing recorded)
    result_key: str | None = None
    row_count: int = 0
    truncated: bool = False
    executed_at: str | None = None
    error: str | None = None
    error_type: str | None = None  # ExecutionError | ExecutionTimeout, the ApplicationError type the workflow raises
    rows_key: str | None = None  # the stored Parquet of every row (store_rows)
    total_row_count: int | None = None  # rows in rows_key


@dataclass
class FinishInput:
    """Records a job's failure when the query activity could not (cancelled, retries exhausted)."""

    query: QueryInput
    error: str
    extra: dict = field(default_factory=dict)


@dataclass
class CallbackInput:
    """One delivery of a finished job's result to its callback URL."""

    delivery_id: str  # the webhook-id of every attempt
    job_id: str
    schedule_seconds: list[float]  # delay before each attempt; the first is normally 0
    jitter: float = 0.1


@dataclass
class AttemptInput:
    delivery_id: str
    job_id: str
    attempt: int  # 1-based
    next_delay_seconds: float | None  # the scheduled wait before the next attempt; None on the last one


@dataclass
class AttemptOutput:
    outcome: str  # delivered | retry | gone | refused
    status_code: int | None = None
    next_delay_seconds: float | None = None  # the wait actually chosen (Retry-After wins); None: no more attempts


@dataclass
class JobInput:
    """One repository job. Its files (inputs, params.json, the code snapshot repo.json) are in the artifact
    store under ``prefix``; only names travel through Temporal."""

    job_id: str
    company_slug: str
    prefix: str
    inputs: list[str]
    time_limit_seconds: float
    memory_bytes: int
    heartbeat_seconds: float = 10.0


@dataclass
class JobOutput:
    status: str  # completed | failed
    error: str | None = None


@dataclass
class JobFailure:
    job_id: str
    error: str
