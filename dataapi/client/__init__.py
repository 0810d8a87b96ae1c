"""Python client of the Data API and the Jobs API.

Needs only httpx: it imports nothing else of this project, so it can be copied or installed on its own::

    from dataapi.client import Client

    with Client("http://localhost:3100", "acme", "s42_...", "secret") as api:
        result = api.execute("default/vendas-por-regiao", data_inicio="2026-01-01", regiao="Sul")
        print(result.rows)
"""

from dataapi.client._core import QueryResult
from dataapi.client._ops import ResultPage
from dataapi.client.aio import AsyncClient, AsyncJob
from dataapi.client.errors import (
    AuthenticationError,
    ConflictError,
    DataAPIError,
    ExecutionError,
    ExecutionTimeoutError,
    IdempotencyKeyReusedError,
    JobFailedError,
    JobNotFinishedError,
    JobTimeoutError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    RateLimitedError,
    ResultExpiredError,
    ServerError,
    ValidationError,
)
from dataapi.client.sync import Client, Job
from dataapi.client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "AsyncClient", "AsyncJob", "AuthenticationError", "Client", "ConflictError", "DataAPIError", "ExecutionError",
    "ExecutionTimeoutError", "IdempotencyKeyReusedError", "Job", "JobFailedError", "JobNotFinishedError",
    "JobTimeoutError", "NotAcceptableError", "NotFoundError", "PermissionDeniedError", "QueryResult", "RateLimit",
    "RateLimitedError", "ResultExpiredError", "ResultPage", "ServerError", "ValidationError",
    "WebhookVerificationError", "verify_webhook",
]
