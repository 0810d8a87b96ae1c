"""The repository-job activity: stage inputs → run the repository in its own process → pack output and logs
→ persist. The job folder is local scratch space; everything that outlives the attempt goes to the artifact
store, so a retry on another worker starts again from there."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import stat
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from temporalio import activity

from activities.blocking import BlockingActivities
from activities.job_defs import FAIL_REPOSITORY_JOB, RUN_REPOSITORY_JOB
from activities.runners import RunLimits, RunResult, run_job
from activities.sandbox import Sandbox
from dataapi.db import session_scope, while_unavailable
from dataapi.jobs_api import jobs
from dataapi.logs import log_context
from dataapi.messages import JobFailure, JobInput, JobOutput
from dataapi.models import RepoJob
from dataapi.statuses import RepoJobStatus
from dataapi.storage.base import ArtifactNotFound, ArtifactStore

log = logging.getLogger("dataapi.activities.jobs")
STORE_WAIT_SECONDS = 120.0  # a finished run waits this long for an unreachable store before the attempt fails


def zip_dir(src: Path, dest: Path) -> None:
    """Packs a folder (relative names, regular files only, in a stable order).

    The folder was the job's to write: links are never followed (a link to a host path would pack that path),
    FIFOs and the like are skipped (reading one would block), and ``dest`` is created afresh, whatever the job
    left under that name (a link there would make us write through it)."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    else:
        dest.unlink(missing_ok=True)
    files = []
    for folder, dirs, names in os.walk(src, followlinks=False):
        dirs.sort()
        files += [Path(folder, name) for name in names]
    with open(dest, "xb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(files):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:  # a link (ELOOP) or gone
                continue
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                with z.open(path.relative_to(src).as_posix(), "w", force_zip64=True) as entry:
                    shutil.copyfileobj(f, entry, 1 << 20)


class StepLog:
    """The platform's own log of a job's steps (logs/platform.log), next to the process's stdout and stderr."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")


class JobActivities(BlockingActivities):
    """``limits``: the limits of every run (time and memory come from each job); ``sandbox``: how runs are
    isolated. Holds no key or secret: a job worker needs the store, the artifacts and Temporal only."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore, work_dir: Path, executor: ThreadPoolExecutor,
                 limits: RunLimits = RunLimits(), sandbox: Sandbox = Sandbox()):  # noqa: B008 - frozen
        self.engine, self.artifacts, self.work_dir, self.executor = engine, artifacts, Path(work_dir), executor
        self.limits, self.sandbox = limits, sandbox

    def _status(self, job_id: str) -> str | None:
        with session_scope(self.engine) as session:
            job = session.get(RepoJob, job_id)
            return job.status if job else None

    def _stage(self, inp: JobInput, job_dir: Path, step: StepLog, attempt: int) -> dict:
        shutil.rmtree(job_dir, ignore_errors=True)  # a retry starts from the artifact store again
        for sub in ("inputs", "output", "logs"):
            (job_dir / sub).mkdir(parents=True, exist_ok=True)
        step(f"attempt {attempt}: staging {len(inp.inputs)} input file(s)")
        for name in inp.inputs:
            target = job_dir / "inputs" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.artifacts.get_file(f"{inp.prefix}/inputs/{name}", target)
        self.artifacts.get_file(f"{inp.prefix}/params.json", job_dir / "params.json")
        return json.loads(self.artifacts.get_bytes(f"{inp.prefix}/repo.json"))

    def _persist(self, inp: JobInput, job_dir: Path, result: RunResult, step: StepLog) -> JobOutput:
        if self._status(inp.job_id) != RepoJobStatus.PROCESSING:  # deleted while it ran: keep nothing
            return JobOutput(status=RepoJobStatus.FAILED, error="Job deleted")
        status = RepoJobStatus.COMPLETED if result.ok else RepoJobStatus.FAILED
        step(f"run finished in {result.duration_ms} ms: {status}" + (f" ({result.error})" if result.error else ""))
        if result.ok:
            self.artifacts.put_file(f"{inp.prefix}/result.json", job_dir / "result.json")
            zip_dir(job_dir / "output", job_dir / "output.zip")
            self.artifacts.put_file(f"{inp.prefix}/output.zip", job_dir / "output.zip")
        step("packing logs")
        zip_dir(job_dir / "logs", job_dir / "logs.zip")
        self.artifacts.put_file(f"{inp.prefix}/logs.zip", job_dir / "logs.zip")
        with session_scope(self.engine) as session:
            jobs.finish_job(session, inp.job_id, status, None if result.ok else result.error)
        return JobOutput(status=status, error=None if result.ok else result.error)

    @activity.defn(name=RUN_REPOSITORY_JOB)
    async def run_repository_job(self, inp: JobInput) -> JobOutput:
        log_context.set({"job_id": inp.job_id, "company": inp.company_slug})
        job_dir = self.work_dir / inp.job_id
        step = StepLog(job_dir / "logs" / "platform.log")
        try:
            repo = await self._blocking(self._stage, inp, job_dir, step, activity.info().attempt)
        except ArtifactNotFound:  # deleted before it ran
            shutil.rmtree(job_dir, ignore_errors=True)
            return JobOutput(status=RepoJobStatus.FAILED, error="Job deleted")
        step(f"running the {repo['runner']} repository")
        kills: list[Callable[[], None]] = []
        cancelled = threading.Event()

        def started(kill: Callable[[], None]) -> None:  # a cancel that came before the process existed wins
            kills.append(kill)
            if cancelled.is_set():
                kill()

        limits = dataclasses.replace(self.limits, time_limit_seconds=inp.time_limit_seconds,
                                     memory_bytes=inp.memory_bytes)
        running = asyncio.ensure_future(self._blocking(
            run_job, repo["runner"], repo["code"], job_dir, limits, started, self.sandbox))
        try:
            while not running.done():
                await asyncio.wait({running}, timeout=min(1.0, inp.heartbeat_seconds / 3))
                activity.heartbeat()
            result = running.result()
            return await while_unavailable(lambda: self._blocking(self._persist, inp, job_dir, result, step),
                                           STORE_WAIT_SECONDS, activity.heartbeat)
        except asyncio.CancelledError:  # deleted (or cancelled from the UI): the process goes, its files too
            cancelled.set()
            for kill in kills:
                kill()
            await asyncio.wait({running}, timeout=10)
            raise
        finally:
            await self._blocking(shutil.rmtree, job_dir, True)

    @activity.defn(name=FAIL_REPOSITORY_JOB)
    async def fail_repository_job(self, inp: JobFailure) -> None:
        """Records a failure the run itself could not (retries exhausted, timed out, cancelled)."""

        def record() -> None:
            with session_scope(self.engine) as session:
                jobs.finish_job(session, inp.job_id, RepoJobStatus.FAILED, inp.error)

        await self._blocking(record)
