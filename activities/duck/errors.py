"""What a query on a company database, or a load into it, can fail with."""

from __future__ import annotations

import re
from pathlib import Path


class QueryFailed(Exception):
    """The SQL failed (syntax, binding, runtime). The message is safe to show the caller (``caller_message``)."""

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


# An absolute path: a slash that starts a token (not ``a/b``, not ``s3://``) followed by a name.
_ABSOLUTE_PATH = re.compile(r"""(?<![\w.:/<>])/[\w.~-][^\s"'`,;()\[\]{}]*""")
_WINDOWS_PATH = re.compile(r"""\b[A-Za-z]:\\[^\s"'`,;()]*""")


def caller_message(error: str, data_dir: Path | None = None) -> str:
    """DuckDB's message as a caller may read it: its class and text (``Binder Error: Referenced column "valr"
    not found in FROM clause! Candidate bindings: "valor"``) on one line, without the excerpt of the SQL that
    follows it (the endpoint's SQL is the company's, not the caller's) and without server paths: any absolute
    path, one in the data directory included (whatever characters its name has), reads ``<path>``."""
    first = error.strip().split("\n\n", 1)[0]
    text = " ".join(line.strip() for line in first.splitlines() if line.strip())
    if data_dir is not None:
        text = text.replace(str(data_dir), "/data")  # then one path like any other
    text = _WINDOWS_PATH.sub(_path, _ABSOLUTE_PATH.sub(_path, text))
    return text or "Query execution failed"


def _path(match: re.Match[str]) -> str:
    """``<path>``, and the punctuation of the sentence that ended it (``file /tmp/x: No space``)."""
    path = match.group(0)
    return "<path>" + path[len(path.rstrip(":.!?")):]
