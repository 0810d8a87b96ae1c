"""Runs a repository's code as a job, in a sandbox (activities/sandbox.py), inside the job folder, and judges
the run. The process is started by ``launchers`` and watched by ``supervision``.

The job folder is the contract with the job activity::

    <job_dir>/inputs/      the uploaded input files (validated)
    <job_dir>/params.json  the job's params (a JSON object)
    <job_dir>/output/      what the job writes (packed later into output.zip)
    <job_dir>/logs/        stdout.log and stderr.log, written here (platform.log is the activity's)
    <job_dir>/repo/        the repository's code, written here
    <job_dir>/result.json  written by the job (python) or by sql_runner.py (sql)

Inside the sandbox the job folder is ``/job`` (the working directory and HOME), ``repo/`` read-only, and the
job sees nothing else of the host: no project tree, no ``var/`` (keys, metadata store, company data, other
jobs), no network, no process of the host, an environment built from nothing, uid 65534. Python jobs and the
SQL runner alike run there. Limits: address space (RLIMIT_AS), size of any one file (RLIMIT_FSIZE: Python
ignores SIGXFSZ, so a job gets "File too large" and fails), open files, processes, CPU seconds (a backstop),
no core dumps; the wall-clock limit is enforced here by killing the sandbox, which takes every process in it
down with it. What the job adds to its folder is measured while it runs (``max_output_bytes`` in all,
``supervision.OUTPUT_MAX_ENTRIES`` files and folders) and the job is killed past either. stdout and stderr come through
pipes and are copied to the logs up to ``max_log_bytes`` each, the rest dropped: a chatty job neither fails
nor fills the disk.

Fail closed: when the sandbox cannot start (bwrap missing, user namespaces refused), the run fails with an
error saying so. ``Sandbox(unsandboxed=True)`` (DATAAPI_UNSANDBOXED_JOBS, for development) runs the job as a
plain process group of the worker instead, with a warning logged at every run: it then reads whatever the
worker can.

The sandbox reports a job killed by a signal as an exit status of 128 + the signal; such statuses are named
as the signal ("killed by signal SIGKILL"), so a job that exits with status 137 by itself reads the same.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import orjson

from activities.launchers import Sandboxed, Unsandboxed
from activities.sandbox import Sandbox, SandboxUnavailable
from activities.supervision import CappedLog, OutputMeter, ProcessGroup, supervise
from dataapi.jobs_api.code import RepositoryCodeError, validate_code
from dataapi.statuses import Runner

log = logging.getLogger("dataapi.activities.runners")
RESULT_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class RunLimits:
    time_limit_seconds: float = 3600
    memory_bytes: int = 2 << 30  # address space (RLIMIT_AS), which is more than resident memory
    max_output_bytes: int = 1 << 30  # any one file (RLIMIT_FSIZE), and all it adds to its folder together
    max_log_bytes: int = 10 << 20  # each of stdout.log and stderr.log; the rest is dropped
    max_processes: int = 256  # processes and threads in the sandbox (RLIMIT_NPROC)
    max_open_files: int = 1024  # RLIMIT_NOFILE
    tmp_bytes: int = 64 << 20  # each of the sandbox's /tmp and /dev/shm (memory-backed)


@dataclass
class RunResult:
    ok: bool
    exit_code: int | None  # None when killed by a signal or never started
    error: str | None  # short and safe to show the caller; the details are in the logs
    duration_ms: int


def run_job(runner: str, code: dict, job_dir: Path, limits: RunLimits,
            on_start: Callable[[Callable[[], None]], None] | None = None,
            sandbox: Sandbox = Sandbox()) -> RunResult:  # noqa: B008 - frozen, hence shareable
    """Writes repo/, runs the job to its end (or its time limit, or a kill) and judges it.

    Blocking: call it from a worker thread. ``on_start`` receives, as soon as the process exists, a function
    that kills it (the whole sandbox) from any thread; the result then says "killed".
    """
    job_dir = Path(job_dir).resolve()
    try:
        code = validate_code(runner, code)
    except RepositoryCodeError as e:  # refused when the repository was saved; kept out of the run all the same
        return RunResult(ok=False, exit_code=None, error=f"invalid repository code: {e}", duration_ms=0)
    _prepare(runner, code, job_dir)
    logs = job_dir / "logs"
    logs.mkdir(exist_ok=True)
    (job_dir / "output").mkdir(exist_ok=True)
    output = OutputMeter(job_dir, limits.max_output_bytes)
    started = time.monotonic()
    try:
        launch = Unsandboxed(runner, code, job_dir, limits) if sandbox.unsandboxed else \
            Sandboxed(runner, code, job_dir, limits, sandbox)
    except SandboxUnavailable as e:
        log.error("repository job not run: %s", e)
        return RunResult(ok=False, exit_code=None, error=f"sandbox unavailable: {e}", duration_ms=0)
    cap = limits.max_log_bytes
    with launch, CappedLog(logs / "stdout.log", cap) as out, CappedLog(logs / "stderr.log", cap) as err:
        try:
            process = launch.start()
        except OSError as e:  # the bwrap binary missing or not executable
            log.error("repository job not run: cannot start %s: %s", launch.args[0], e)
            return RunResult(ok=False, exit_code=None, duration_ms=0,
                             error=f"sandbox unavailable: cannot start {Path(launch.args[0]).name} ({e.strerror})")
        stdout, stderr = process.stdout, process.stderr
        assert stdout is not None and stderr is not None  # started with both piped
        group = ProcessGroup(process)
        try:
            if on_start is not None:
                on_start(group.cancel)
            stopped = supervise(group, {stdout: out, stderr: err},
                                started + limits.time_limit_seconds, output)
        finally:
            group.kill()  # on any way out, nothing of the job outlives this call
            status = group.reap()
            stdout.close()
            stderr.close()
        did_not_start = launch.failed_to_start() and not group.cancelled and stopped is None
    duration_ms = int((time.monotonic() - started) * 1000)
    if did_not_start:
        reason = _bwrap_message(logs / "stderr.log")
        log.error("repository job not run: the sandbox could not start: %s", reason)
        return RunResult(ok=False, exit_code=None, duration_ms=duration_ms,
                         error=f"sandbox unavailable: bwrap could not start the sandbox ({reason})")
    error = (_failure(group.cancelled, stopped, status, logs / "stderr.log") or output.over()
             or _check_result(job_dir / "result.json"))
    exit_code = status if 0 <= status <= 128 else None
    return RunResult(ok=error is None, exit_code=exit_code, error=error, duration_ms=duration_ms)


def _prepare(runner: str, code: dict, job_dir: Path) -> None:
    """Writes repo/ afresh."""
    repo = job_dir / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    (job_dir / "result.json").unlink(missing_ok=True)  # only this run's result counts
    if runner == Runner.SQL:
        (repo / "sql.json").write_text(json.dumps(code), encoding="utf-8")
        return
    for path, text in code["files"].items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _failure(cancelled: bool, stopped: str | None, status: int, stderr_log: Path) -> str | None:
    if cancelled:
        return "killed"
    if stopped:
        return stopped
    if status < 0 or 128 < status <= 128 + 64:  # the sandbox's pid 1 exits with 128 + the job's signal
        number = -status if status < 0 else status - 128
        try:
            return f"killed by signal {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    if status > 0:
        return "memory limit exceeded" if _ran_out_of_memory(stderr_log) else f"exited with status {status}"
    return None


def _bwrap_message(stderr_log: Path) -> str:
    """bwrap's last word (``bwrap: <what failed>``) on why it could not set the sandbox up."""
    with suppress(OSError):
        lines = stderr_log.read_text("utf-8", "replace").splitlines()
        for line in reversed(lines):
            if line.startswith("bwrap:"):
                return line[:300]
    return "no message from bwrap"


def _ran_out_of_memory(stderr_log: Path) -> bool:
    """Python's last word on a failed allocation (and sql_runner's) is a line starting with MemoryError."""
    with stderr_log.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
        lines = f.read().decode("utf-8", "replace").strip().splitlines()
    return bool(lines) and lines[-1].startswith("MemoryError")


def _check_result(path: Path) -> str | None:
    try:
        # No symlink (it could point anywhere), and a FIFO must not block us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "result.json missing"
    except OSError:
        return "result.json is not a regular file"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "result.json is not a regular file"
        if info.st_size > RESULT_MAX_BYTES:
            return f"result.json is larger than {RESULT_MAX_BYTES >> 20} MB"
        data = f.read()
    try:
        orjson.loads(data)  # strict: NaN or Infinity would not be JSON for the caller either
    except orjson.JSONDecodeError:
        return "result.json is not valid JSON"
    return None
