"""Logging for the API and the workers: plain text, or one JSON object per line (``DATAAPI_LOG_FORMAT=json``)
carrying the job id and company when the record knows them, and the request id of the HTTP request it was
logged in (``X-Request-Id``, set by ``api/request_id.py``)."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Set by request handlers and activities; merged into every JSON record made in that context.
log_context: ContextVar[dict | None] = ContextVar("log_context", default=None)
# The id of the HTTP request being served (the caller's ``X-Request-Id`` or a generated one); None elsewhere.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        out.update(log_context.get() or {})
        rid = request_id.get()
        if rid is not None:
            out["request_id"] = rid
        info = getattr(record, "temporal_activity", None) or getattr(record, "temporal_workflow", None)
        if isinstance(info, dict):  # the SDK's loggers: the workflow id is the job id
            out.setdefault("job_id", info.get("workflow_id"))
            out["task_queue"] = info.get("task_queue")
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
