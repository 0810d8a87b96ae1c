"""Timestamps on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, second precision, as in the seed's examples. Naive values are UTC."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
