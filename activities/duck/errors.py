"""What a query on a company database, or a load into it, can fail with."""

from __future__ import annotations


class QueryFailed(Exception):
    """The SQL failed (syntax, binding, runtime). The message is safe to show the caller."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SqlRefused(QueryFailed):
    """The SQL calls a function endpoint SQL may not use (``dataapi.data_api.sqlguard``)."""


class ResultTooLarge(QueryFailed):
    """The result's JSON passed the byte limit while it was being serialised; nothing more was fetched."""

    def __init__(self, limit: int):
        super().__init__(f"The result is larger than {_human_bytes(limit)}, the most one execution may return: "
                         "narrow the query (filters, aggregation, fewer columns) or lower max_rows")
        self.limit = limit


def _human_bytes(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


class QueryInterrupted(Exception):
    """The query was stopped through the interrupt function handed to ``on_start``."""


class LoadFailed(Exception):
    """A data load was refused (bad table name, unreadable file, DuckDB error)."""
