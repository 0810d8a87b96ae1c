"""Jobs of both APIs counted by kind and status, for the metrics an operator scrapes."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from dataapi.models import Job, RepoJob

KINDS = (("query", Job), ("repository", RepoJob))


def jobs_by_state(session: Session) -> list[tuple[str, str, int]]:
    """(kind, status, count) for every status that has jobs."""
    return [(kind, status, count) for kind, model in KINDS
            for status, count in session.exec(select(model.status, func.count()).group_by(model.status))]
