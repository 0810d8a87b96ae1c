"""What expires and what the prune removes (dataapi/retention.py), on a fresh SQLite and PostgreSQL store each, with
the local and the S3 artifact store: a dry run counts exactly what a run then removes, batch by batch, a second run
(or a concurrent one) removes nothing more, and whatever is not yet due stays."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict
from datetime import timedelta

import pytest
from sqlmodel import select

from dataapi import retention
from dataapi.db import make_engine, session_scope, upgrade
from dataapi.errors import DomainError
from dataapi.identity import service as identity
from dataapi.jobs_api import repositories
from dataapi.models import (
    CachedResult,
    CallbackAttempt,
    CallbackDelivery,
    Endpoint,
    Job,
    RefreshToken,
    RepoJob,
    as_utc,
    utcnow,
)
from dataapi.retention import Policy, PruneCounts
from dataapi.storage.local import LocalArtifactStore
from dataapi.storage.s3 import S3ArtifactStore
from tests.conftest import unique_slug
from tests.support.s3 import CREDENTIALS, new_bucket

DAY = 86_400.0
RETENTION, TOMBSTONE = 7 * DAY, 30 * DAY
CODE = {"files": {"main.py": "print(1)\n"}, "entry_point": "main.py"}


@pytest.fixture
def store(empty_url):
    upgrade(empty_url)
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["local", "s3"])
def artifacts(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3ArtifactStore(new_bucket(endpoint), "p", endpoint, "us-east-1", **CREDENTIALS)


def _ago(days: float):
    return utcnow() - timedelta(days=days)


class World:
    """A company with jobs of both APIs, deliveries and tokens at every age, and their artifacts."""

    def __init__(self, engine, artifacts):
        self.engine, self.artifacts = engine, artifacts
        self.expect = PruneCounts()
        with session_scope(engine) as s:
            company = identity.create_company(s, unique_slug())
            self.slug = company.slug
            user = identity.create_user(s, company, "u", ["DataAPIConsumer"])
            self.company_id, self.user_id = company.id, user.id
            endpoint = Endpoint(company_id=company.id, slug="e", sql="SELECT 1")
            s.add(endpoint)
            repo, _ = repositories.upsert_repository(s, company.id, {"name": "R", "runner": "python", "code": CODE})
            s.flush()
            self.endpoint_id, self.repo_id = endpoint.id, repo.id
        self.data: dict[str, str] = {}
        self.repo: dict[str, str] = {}

    def data_job(self, label, *, status="completed", ended_days=None, expired_days=None, delivery=None,
                 delivery_finished_days=None):
        job_id = uuid.uuid4().hex[:24]
        key = f"results/{self.slug}/{job_id}.json"
        self.artifacts.put_bytes(key, b'{"rows": []}')
        self.artifacts.put_bytes(f"results/{self.slug}/{job_id}.parquet", b"PAR1")
        with session_scope(self.engine) as s:
            s.add(Job(id=job_id, company_id=self.company_id, endpoint_id=self.endpoint_id, mode="async", status=status,
                      result_key=key, rows_key=f"results/{self.slug}/{job_id}.parquet",
                      created_at=_ago((ended_days or 0) + 0.01),
                      completed_at=_ago(ended_days) if ended_days is not None else None,
                      expired_at=_ago(expired_days) if expired_days is not None else None))
            s.flush()
            if delivery is not None:
                did = "msg_" + uuid.uuid4().hex[:12]
                s.add(CallbackDelivery(id=did, job_id=job_id, company_id=self.company_id, url="https://x.example",
                                       status=delivery, finished_at=_ago(delivery_finished_days)
                                       if delivery_finished_days is not None else None))
                s.flush()
                s.add(CallbackAttempt(delivery_id=did, attempt=1, outcome="retry"))
        self.data[label] = job_id
        return job_id

    def repo_job(self, label, *, status="completed", ended_days=None, created_days=0.0, expired_days=None):
        job_id = str(uuid.uuid4())
        for name in ("params.json", "result.json", "output.zip", "logs.zip", "inputs/a.csv"):
            self.artifacts.put_bytes(f"jobs/{self.slug}/{job_id}/{name}", b"x")
        with session_scope(self.engine) as s:
            s.add(RepoJob(id=job_id, company_id=self.company_id, repository_id=self.repo_id, application_id="a",
                          client_id="c", created_by="u", user_id=self.user_id, status=status,
                          created_at=_ago(created_days),
                          completed_at=_ago(ended_days) if ended_days is not None else None,
                          expired_at=_ago(expired_days) if expired_days is not None else None))
        self.repo[label] = job_id
        return job_id

    def token(self, expired_days: float) -> None:
        with session_scope(self.engine) as s:
            s.add(RefreshToken(jti=uuid.uuid4().hex, family_id="f", user_id=self.user_id,
                               expires_at=_ago(expired_days)))

    def cache_entry(self, expires_in_days: float) -> str:
        """A result cache index row (dataapi/data_api/cache.py) that expires in that many days (past if negative)."""
        key = uuid.uuid4().hex + uuid.uuid4().hex
        with session_scope(self.engine) as s:
            s.add(CachedResult(key=key, company_id=self.company_id, endpoint_id=self.endpoint_id, job_id="j",
                               result_key=f"results/{self.slug}/j.json", executed_at="2026-01-01T00:00:00Z",
                               size_bytes=10, stored_at=_ago(1), expires_at=_ago(-expires_in_days)))
        return key

    def build(self) -> World:
        # due: expire, or remove
        self.data_job("old", ended_days=8)
        self.data_job("old-failed", status="failed", ended_days=9)
        self.data_job("old-delivered", ended_days=8, delivery="delivered", delivery_finished_days=7.5)
        self.data_job("tombstone", ended_days=40, expired_days=31, delivery="failed", delivery_finished_days=1)
        self.repo_job("old", ended_days=8, created_days=8.1)
        self.repo_job("deleted-while-running", status="deleted", created_days=10)
        self.repo_job("tombstone", ended_days=40, created_days=40, expired_days=31)
        self.token(expired_days=2)
        self.cache_entry(expires_in_days=-0.1)
        self.expect = PruneCounts(data_jobs_expired=3, repo_jobs_expired=2, callback_deliveries=1, data_tombstones=1,
                                  repo_tombstones=1, refresh_tokens=1, cache_entries=1)
        # not due
        self.data_job("fresh", ended_days=6)
        self.data_job("running", status="processing", ended_days=None)
        self.data_job("old-delivering", ended_days=8, delivery="pending")
        self.data_job("young-tombstone", ended_days=20, expired_days=13)
        self.repo_job("fresh", ended_days=6.9, created_days=7)
        self.repo_job("running", status="processing", created_days=20)
        self.repo_job("young-tombstone", ended_days=20, created_days=20, expired_days=13)
        self.token(expired_days=0.5)
        self.fresh_cache_entry = self.cache_entry(expires_in_days=0.1)
        return self

    def artifacts_of_data(self, label: str) -> list[bool]:
        job_id = self.data[label]
        return [self.artifacts.exists(f"results/{self.slug}/{job_id}.{ext}") for ext in ("json", "parquet")]

    def artifacts_of_repo(self, label: str) -> bool:
        return self.artifacts.exists(f"jobs/{self.slug}/{self.repo[label]}/result.json")


def _policy(batch: int = 2) -> Policy:
    return Policy.of(RETENTION, TOMBSTONE, batch)


def test_a_dry_run_counts_what_the_prune_then_removes(store, artifacts):
    w = World(store, artifacts).build()
    p = _policy()
    assert retention.plan(store, p) == w.expect
    assert retention.plan(store, p) == w.expect  # a dry run changes nothing

    beats = []
    assert retention.prune(store, artifacts, p, lambda: beats.append(1)) == w.expect
    # one per batch of 2 (3 data jobs took 2+1, 2 repo jobs 2+0, the five others one each) and per job expired
    assert len(beats) == 9 + 5
    assert retention.plan(store, p) == PruneCounts()
    assert retention.prune(store, artifacts, p) == PruneCounts()  # idempotent

    with session_scope(store) as s:
        jobs = {j.id: j for j in s.exec(select(Job).where(Job.company_id == w.company_id))}
        repo_jobs = {j.id: j for j in s.exec(select(RepoJob).where(RepoJob.company_id == w.company_id))}
        deliveries = {d.job_id: d for d in s.exec(select(CallbackDelivery))}
        attempts = list(s.exec(select(CallbackAttempt)))
        tokens = list(s.exec(select(RefreshToken)))
        cache_keys = list(s.exec(select(CachedResult.key).where(CachedResult.company_id == w.company_id)))
    assert cache_keys == [w.fresh_cache_entry]
    for label in ("old", "old-failed", "old-delivered"):
        assert as_utc(jobs[w.data[label]].expired_at) == p.now
        assert w.artifacts_of_data(label) == [False, False]
    for label in ("fresh", "running", "old-delivering", "young-tombstone"):
        assert label == "young-tombstone" or jobs[w.data[label]].expired_at is None
        assert label == "young-tombstone" or w.artifacts_of_data(label) == [True, True]
    assert w.data["tombstone"] not in jobs
    assert set(deliveries) == {w.data["old-delivering"]}  # the old finished one and the tombstone's went
    assert [a.delivery_id for a in attempts] == [deliveries[w.data["old-delivering"]].id]
    for label in ("old", "deleted-while-running"):
        assert repo_jobs[w.repo[label]].expired_at is not None and not w.artifacts_of_repo(label)
    assert not artifacts.exists(f"jobs/{w.slug}/{w.repo['old']}/inputs/a.csv")
    for label in ("fresh", "running"):
        assert repo_jobs[w.repo[label]].expired_at is None and w.artifacts_of_repo(label)
    assert w.repo["tombstone"] not in repo_jobs and w.repo["young-tombstone"] in repo_jobs
    assert len(tokens) == 1 and as_utc(tokens[0].expires_at) > utcnow() - timedelta(days=1)


def test_two_prunes_at_once_remove_each_thing_once(store, artifacts):
    w = World(store, artifacts).build()
    p = _policy(batch=1)
    results: list[PruneCounts] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(retention.prune(store, artifacts, p))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    total = PruneCounts()
    for r in results:
        total.add(r)
    # Each run stops at its first short batch, so between them they may leave some for the next run; never twice.
    for name, removed in asdict(total).items():
        assert removed <= asdict(w.expect)[name], (name, total)
    total.add(retention.prune(store, artifacts, p))
    assert total == w.expect


def test_a_job_answers_410_once_expired_whether_or_not_pruned():
    ended = utcnow() - timedelta(seconds=RETENTION - 60)
    job = Job(id="a" * 24, company_id=1, endpoint_id=1, mode="async", status="completed", completed_at=ended)
    retention.check_unexpired(job, RETENTION)  # a minute left
    assert retention.expires_at(ended, RETENTION) == ended + timedelta(seconds=RETENTION)
    with pytest.raises(DomainError) as e:
        retention.check_unexpired(job, RETENTION - 120)
    assert (e.value.status, e.value.code) == (410, "RESULT_EXPIRED")
    assert "results are kept 6.99" in e.value.message
    running = Job(id="b" * 24, company_id=1, endpoint_id=1, mode="async", status="processing")
    retention.check_unexpired(running, 0)  # never while it runs
    tombstone = Job(id="c" * 24, company_id=1, endpoint_id=1, mode="async", status="completed",
                    completed_at=utcnow(), expired_at=utcnow())
    with pytest.raises(retention.ResultExpired):  # pruned early (a shorter retention then): gone all the same
        retention.check_unexpired(tombstone, RETENTION)


def test_leftover_job_folders_are_those_no_running_job_owns(store, tmp_path):
    w = World(store, LocalArtifactStore(tmp_path / "artifacts"))
    running, finished = w.repo_job("running", status="processing"), w.repo_job("done", ended_days=0)
    work = tmp_path / "work"
    for name in (running, finished, "gone-" + uuid.uuid4().hex):
        (work / name / "output").mkdir(parents=True)
    (work / "stray-file").write_text("x")
    assert sorted(f.name for f in retention.stale_work_folders(store, work)) == sorted(
        f.name for f in work.iterdir() if f.is_dir() and f.name != running)
    assert retention.stale_work_folders(store, tmp_path / "absent") == []


def test_the_prune_command_dry_run_counts_what_it_then_removes(store, empty_url, tmp_path, monkeypatch, capsys):
    """``dataapi prune --dry-run`` and ``dataapi prune``, settings from the environment as an operator has them."""
    from cli.main import main
    from dataapi.settings import get_settings

    var = tmp_path / "var"
    w = World(store, LocalArtifactStore(var / "artifacts")).build()
    (var / "work" / "left-behind").mkdir(parents=True)
    monkeypatch.setenv("DATAAPI_DATABASE_URL", empty_url)
    monkeypatch.setenv("DATAAPI_VAR_DIR", str(var))
    get_settings.cache_clear()
    try:
        answers = []
        for argv in (["prune", "--dry-run"], ["prune"], ["prune", "--dry-run"]):
            assert main(argv) == 0
            answers.append(json.loads(capsys.readouterr().out))
    finally:
        get_settings.cache_clear()
    expected = {**asdict(w.expect), "work_folders": 1}
    assert answers[0] == {"dry_run": True, **expected}
    assert answers[1] == {"dry_run": False, **expected}
    assert answers[2] == {"dry_run": True, **asdict(PruneCounts())}
    assert not (var / "work" / "left-behind").exists()
    assert w.artifacts_of_data("old") == [False, False] and w.artifacts_of_data("fresh") == [True, True]
