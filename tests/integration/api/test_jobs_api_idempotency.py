"""``Idempotency-Key`` on the Jobs API's execute: the same key and request name one job, concurrent duplicates
included; another request under the same key is refused and leaves nothing behind (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from dataapi.db import session_scope
from dataapi.models import RepoJob
from tests.support.jobs_api import CSV

KEY = {"Idempotency-Key": "order-42"}


@pytest.fixture(params=["sqlite", "postgresql"])
def stack_settings(request, stack_settings):
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param])
    return stack_settings.model_copy(update={"database_url": url})


def _jobs(org) -> list[RepoJob]:
    with session_scope(org.ctx.engine) as s:
        return list(s.exec(select(RepoJob).where(RepoJob.company_id == org.company_id)).all())


async def test_same_key_and_request_is_the_same_job(org):
    files = {"file": ("vendas.csv", CSV, "text/csv")}
    answers = await asyncio.gather(*(org.submit(files=files, params={"a": 1, "b": 2}, **KEY) for _ in range(3)))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    job_id = answers[0].json()["job_id"]
    assert {r.json()["job_id"] for r in answers} == {job_id}
    again = await org.submit(files={"file": ("vendas.csv", CSV, "text/csv")}, params={"a": 1, "b": 2}, **KEY)
    assert again.status_code == 201 and again.json() == {"message": "Job created", "job_id": job_id}
    assert [j.id for j in _jobs(org)] == [job_id]
    assert (await org.finished(job_id)).status_code == 200

    # Another file under the same key: 422 in the dialect, and nothing of it stays stored.
    other = await org.submit(files={"file": ("vendas.csv", CSV + b"2026-03-01,Sul,1\n", "text/csv")},
                             params={"a": 1, "b": 2}, **KEY)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"], other.text
    assert [j.id for j in _jobs(org)] == [job_id]
    assert _stored(org) == {job_id}

    # Another user of the company has keys of its own.
    mine = await org.submit(params={"a": 1, "b": 2}, **org.add_user("outra"), **KEY)
    assert mine.status_code == 201 and mine.json()["job_id"] != job_id


async def test_concurrent_different_requests_under_one_key_make_one_job(org):
    answers = await asyncio.gather(*(org.submit(params={"a": n, "b": 2}, **KEY) for n in range(4)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) >= 1 and set(codes) <= {201, 422}, [r.text for r in answers]
    assert len({r.json()["job_id"] for r in answers if r.status_code == 201}) == 1
    assert len(_jobs(org)) == 1


def _stored(org) -> set[str]:
    """The job ids that have files in the (local) artifact store."""
    root = org.ctx.settings.resolved_artifact_dir / "jobs" / org.slug
    return {p.name for p in root.iterdir()} if root.exists() else set()
