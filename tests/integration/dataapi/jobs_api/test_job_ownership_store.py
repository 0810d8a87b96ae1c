"""Ownership of Jobs API jobs in the store, on SQLite and PostgreSQL: the scope a caller sees (its own jobs, or
every user's with ``jobs:all_clients``, always within its application and client), and migration 0006 over a
store that already holds jobs."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from dataapi.db import alembic_config, make_engine, session_scope, upgrade
from dataapi.identity import service as identity
from dataapi.jobs_api import jobs, repositories
from dataapi.models import RepoJob
from tests.conftest import unique_slug
from tests.support.old_rows import old_company

CODE = {"files": {"main.py": "print(1)\n"}, "entry_point": "main.py"}


def _world(store) -> dict:
    """A company with two consumers and an admin, one repository and jobs of each, and another company."""
    hasher = identity.SecretHasher(b"k" * 48)
    out: dict = {"users": {}}
    with session_scope(store) as s:
        company = identity.create_company(s, unique_slug())
        other = identity.create_company(s, unique_slug())
        for name, policies in (("ana", ["JobsAPIConsumer"]), ("bia", ["JobsAPIConsumer"]),
                               ("chefe", ["CompanyAdmin"])):
            user = identity.create_user(s, company, name, policies)
            key, _ = identity.create_api_key(s, hasher, company, user)
            out["users"][name] = (user.id, key.id)
        repo, _ = repositories.upsert_repository(s, company.id, {"name": "R", "runner": "python", "code": CODE})
        rows = {"ana": ("ana", "app", "c"), "ana-c2": ("ana", "app", "c2"), "bia": ("bia", "app", "c"),
                "legacy": (None, "app", "c"), "ana-deleted": ("ana", "app", "c")}
        for label, (owner, app, client) in rows.items():
            user_id, key_id = out["users"][owner] if owner else (None, None)
            job_id = str(uuid.uuid4())
            s.add(RepoJob(id=job_id, company_id=company.id, repository_id=repo.id, application_id=app,
                          client_id=client, created_by=owner or "header-said-so", user_id=user_id, api_key_id=key_id,
                          status="deleted" if label.endswith("deleted") else "completed"))
            out[label] = job_id
        out.update(company_id=company.id, other_id=other.id, repo_id=repo.id)
    return out


def _scope(w: dict, who: str, client: str = "c", all_users: bool = False, company: str = "company_id"):
    return jobs.JobScope(w[company], "app", client, w["users"][who][0], all_users=all_users)


def test_a_user_sees_only_its_own_jobs(store):
    w = _world(store)
    with session_scope(store) as s:
        def visible(scope) -> set[str]:
            listed = set(jobs.list_jobs(s, scope, w["repo_id"], None, None))
            found = {j for j in (w["ana"], w["ana-c2"], w["bia"], w["legacy"], w["ana-deleted"])
                     if jobs.find_job(s, scope, j) is not None}
            assert listed == found
            return found

        assert visible(_scope(w, "ana")) == {w["ana"]}
        assert visible(_scope(w, "ana", client="c2")) == {w["ana-c2"]}
        assert visible(_scope(w, "bia")) == {w["bia"]}
        assert visible(_scope(w, "bia", client="c2")) == set()
        # jobs:all_clients: every user's, the unowned earlier ones too, still within the application and client
        assert visible(_scope(w, "chefe", all_users=True)) == {w["ana"], w["bia"], w["legacy"]}
        assert visible(_scope(w, "chefe", client="c2", all_users=True)) == {w["ana-c2"]}
        assert visible(_scope(w, "chefe")) == set()  # the admin's own: none
        assert visible(_scope(w, "ana", all_users=True, company="other_id")) == set()
        assert jobs.find_job(s, _scope(w, "ana"), "x" * 65) is None


def test_an_owner_must_be_a_user_and_a_key_of_the_store(store):
    w = _world(store)
    for change in ({"user_id": 10**9}, {"api_key_id": 10**9}):
        with pytest.raises(IntegrityError), session_scope(store) as s:
            row = RepoJob(id=str(uuid.uuid4()), company_id=w["company_id"], repository_id=w["repo_id"],
                          application_id="app", client_id="c", created_by="ana", **change)
            s.add(row)


def test_migration_keeps_earlier_jobs_without_an_owner(empty_url):
    upgrade(empty_url, "0005")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            company_id = old_company(conn)
            conn.execute(text("INSERT INTO repositories (company_id, repo_id, name, runner, code, default_params, "
                              "repo_metadata, created_at, updated_at) VALUES (:c, 'r', 'R', 'python', '{}', '{}', "
                              "'{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"c": company_id})
            repo_id = conn.execute(text("SELECT id FROM repositories")).scalar_one()
            conn.execute(text("INSERT INTO repo_jobs (id, company_id, repository_id, application_id, client_id, "
                              "created_by, status, inputs, params, has_params, job_metadata, created_at) VALUES "
                              "('old-job', :c, :r, 'app', 'c', 'ana', 'completed', '[]', '{}', false, '{}', "
                              "CURRENT_TIMESTAMP)"), {"c": company_id, "r": repo_id})
        engine.dispose()
        upgrade(empty_url)
        columns = {c["name"]: c for c in inspect(engine).get_columns("repo_jobs")}
        assert columns["user_id"]["nullable"] and columns["api_key_id"]["nullable"]
        assert "ix_repo_jobs_user_id" in {i["name"] for i in inspect(engine).get_indexes("repo_jobs")}
        with session_scope(engine) as s:
            old = s.get(RepoJob, "old-job")
            assert (old.created_by, old.user_id, old.api_key_id, old.status) == ("ana", None, None, "completed")
            company = identity.get_company(s, "acme")
            ana = identity.create_user(s, company, "ana", ["JobsAPIConsumer"])
            mine = jobs.JobScope(company_id, "app", "c", ana.id)
            # created_by named her, but only a header said so: the job stays unowned
            assert jobs.find_job(s, mine, "old-job") is None
            everyone = jobs.JobScope(company_id, "app", "c", ana.id, all_users=True)
            assert jobs.list_jobs(s, everyone, repo_id, None, None) == ["old-job"]
        engine.dispose()
        command.downgrade(alembic_config(empty_url), "0005")  # and back: the downgrade runs too
        assert "user_id" not in {c["name"] for c in inspect(engine).get_columns("repo_jobs")}
        upgrade(empty_url)
    finally:
        engine.dispose()
