"""Runs a repository's code as a job, in a sandbox (activities/sandbox.py), inside the job folder.

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
``OUTPUT_MAX_ENTRIES`` files and folders) and the job is killed past either. stdout and stderr come through
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

import ctypes
import json
import logging
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import orjson

from activities import sandbox as sb
from activities.sandbox import Sandbox, SandboxUnavailable
from dataapi.jobs_api.code import RepositoryCodeError, validate_code

log = logging.getLogger("dataapi.activities.runners")
RESULT_MAX_BYTES = 16 << 20
SQL_RUNNER = Path(__file__).with_name("sql_runner.py")
SQL_RUNNER_MODULES = [Path(__file__).with_name("json_values.py")]  # what sql_runner.py loads from beside it
_TICK = 0.05  # seconds between looks at the process (and the deadline)
_DRAIN_SECONDS = 1.0  # how long leftover output may take to arrive once the job has ended
_CHUNK = 64 << 10
_MEASURE_EVERY = 0.5  # seconds between measures of what the job has written
OUTPUT_MAX_ENTRIES = 100_000  # files and folders a job may add to its folder


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


# --- running --------------------------------------------------------------------------------------------

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
    output = _OutputMeter(job_dir, limits.max_output_bytes)
    started = time.monotonic()
    try:
        launch = _Unsandboxed(runner, code, job_dir, limits) if sandbox.unsandboxed else \
            _Sandboxed(runner, code, job_dir, limits, sandbox)
    except SandboxUnavailable as e:
        log.error("repository job not run: %s", e)
        return RunResult(ok=False, exit_code=None, error=f"sandbox unavailable: {e}", duration_ms=0)
    cap = limits.max_log_bytes
    with launch, _Log(logs / "stdout.log", cap) as out, _Log(logs / "stderr.log", cap) as err:
        try:
            process = launch.start()
        except OSError as e:  # the bwrap binary missing or not executable
            log.error("repository job not run: cannot start %s: %s", launch.args[0], e)
            return RunResult(ok=False, exit_code=None, duration_ms=0,
                             error=f"sandbox unavailable: cannot start {Path(launch.args[0]).name} ({e.strerror})")
        group = _Group(process)
        try:
            if on_start is not None:
                on_start(group.cancel)
            stopped = _supervise(group, {process.stdout: out, process.stderr: err},
                                 started + limits.time_limit_seconds, output)
        finally:
            group.kill()  # on any way out, nothing of the job outlives this call
            status = group.reap()
            process.stdout.close()
            process.stderr.close()
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
    if runner == "sql":
        (repo / "sql.json").write_text(json.dumps(code), encoding="utf-8")
        return
    for path, text in code["files"].items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _command(runner: str, code: dict, python: str, job_dir: str, sql_runner: str) -> list[str]:
    if runner == "sql":
        # Isolated (-I): sys.path is the standard library and site-packages, never the script's folder; -I
        # also ignores PYTHON* variables, hence -B.
        return [python, "-I", "-B", sql_runner, job_dir]
    # Not -I: it would drop the entry point's folder from sys.path (no `import helpers`) and ignore the
    # PYTHON* variables set on purpose; the environment is built from nothing anyway, and the worker's
    # site-packages (pandas, duckdb...) stay importable.
    return [python, f"{job_dir}/repo/{code['entry_point']}"]


class _Sandboxed:
    """The job in bwrap. A pipe tells whether the sandbox started: the launcher inside writes to it."""

    def __init__(self, runner: str, code: dict, job_dir: Path, limits: RunLimits, sandbox: Sandbox):
        bwrap = sb.bwrap_binary(sandbox.bwrap)
        python = sb.interpreter()[0]
        self._fds: list[int] = []
        self.marker, marker_w = self._pipe()
        data = {}
        for destination, content in sb.etc_files().items():
            r, w = self._pipe()
            os.write(w, content)  # a few bytes: the pipe holds them
            os.close(w)
            self._fds.remove(w)
            data[destination] = r
        command = _command(runner, code, python, sb.JOB_DIR, sb.SQL_RUNNER_INSIDE)
        self.args = sb.bwrap_command(bwrap, job_dir, command, limits, marker_w, data,
                                     [(str(SQL_RUNNER), sb.SQL_RUNNER_INSIDE),
                                      *((str(m), str(Path(sb.SQL_RUNNER_INSIDE).with_name(m.name)))
                                        for m in SQL_RUNNER_MODULES)] if runner == "sql" else [])
        self._pass = [marker_w, *data.values()]
        self._marker_w = marker_w
        self.cgroup = sb.ProcessCgroup.create(limits.max_processes, f"dataapi-job-{uuid.uuid4().hex}")
        if self.cgroup is None and os.geteuid() == 0:
            log.warning("no pids cgroup could be made for this job and the worker runs as root, whom "
                        "RLIMIT_NPROC does not bind: the job's process count is not capped")

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self._fds += [r, w]
        return r, w

    def start(self) -> subprocess.Popen:
        try:
            return subprocess.Popen(  # noqa: S603 - bwrap, with arguments we built
                self.args, cwd="/", env={}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, pass_fds=self._pass,
                preexec_fn=self.cgroup.enter if self.cgroup else None)  # only a write(2) between fork and exec
        finally:
            for fd in self._pass:  # the sandbox holds its copies; ours would keep the marker pipe open
                os.close(fd)
                self._fds.remove(fd)

    def failed_to_start(self) -> bool:
        """Whether the launcher never ran inside the sandbox (asked once the sandbox has ended)."""
        os.set_blocking(self.marker, False)
        try:
            return os.read(self.marker, 16) != b"started"
        except BlockingIOError:
            return True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for fd in self._fds:
            with suppress(OSError):
                os.close(fd)
        if self.cgroup is not None:
            self.cgroup.close()


class _Unsandboxed:
    """The job as a plain process group of the worker (DATAAPI_UNSANDBOXED_JOBS): development only."""

    def __init__(self, runner: str, code: dict, job_dir: Path, limits: RunLimits):
        log.warning("DATAAPI_UNSANDBOXED_JOBS is on: this repository job runs WITHOUT a sandbox, as the "
                    "worker's user, and can read the worker's files and reach its network")
        self.job_dir, self.limits = job_dir, limits
        self.args = _command(runner, code, sys.executable, str(job_dir), str(SQL_RUNNER))

    def start(self) -> subprocess.Popen:
        environment = {**sb.environment(), "HOME": str(self.job_dir)}
        environment.pop("TMPDIR")
        return subprocess.Popen(  # noqa: S603 - our interpreter, paths we wrote; the code is the job's own
            self.args, cwd=self.job_dir, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_rlimits(self.limits))

    def failed_to_start(self) -> bool:
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class _OutputMeter:
    """What the job has added to its folder (bytes, entries), measured against the folder as staged; the
    logs are ours (capped) and not counted. Symlinks are counted, never followed."""

    def __init__(self, job_dir: Path, max_bytes: int):
        self.job_dir, self.max_bytes = job_dir, max_bytes
        self.base_bytes, self.base_entries = 0, 0
        self.base_bytes, self.base_entries = self._measure()
        self._next = 0.0
        self.error: str | None = None

    def _measure(self) -> tuple[int, int]:
        """(bytes, entries), the walk cut short once the entries are past the cap: enough to judge."""
        size = entries = 0
        stack = [self.job_dir]
        while stack:
            with suppress(OSError), os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.path == str(self.job_dir / "logs"):
                        continue
                    entries += 1
                    with suppress(OSError):
                        size += entry.stat(follow_symlinks=False).st_size
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    if entries - self.base_entries > OUTPUT_MAX_ENTRIES:
                        return size, entries
        return size, entries

    def check(self, now: float) -> str | None:
        """Measures at most every _MEASURE_EVERY seconds; the error once over."""
        if now >= self._next:
            self._next = now + _MEASURE_EVERY
            self.over()
        return self.error

    def over(self) -> str | None:
        size, entries = self._measure()
        if size - self.base_bytes > self.max_bytes:
            self.error = f"output limit exceeded: the job wrote more than {self.max_bytes} bytes"
        elif entries - self.base_entries > OUTPUT_MAX_ENTRIES:
            self.error = f"output limit exceeded: the job created more than {OUTPUT_MAX_ENTRIES} files"
        return self.error


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _rlimits(limits: RunLimits) -> Callable[[], None]:
    """The limits of an unsandboxed job, computed here so that the child (between fork and exec) only calls
    setrlimit. No RLIMIT_NPROC: outside a user namespace it would count the worker's processes too."""
    values = []
    for which, wanted in ((resource.RLIMIT_AS, limits.memory_bytes),
                          (resource.RLIMIT_FSIZE, limits.max_output_bytes),
                          (resource.RLIMIT_NOFILE, limits.max_open_files),
                          (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(which)[1]
        values.append((which, wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)))

    def apply() -> None:
        for which, value in values:
            resource.setrlimit(which, (value, value))  # hard = soft: the job cannot raise them back
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # a worker killed with -9 takes its job with it

    return apply


class _Log:
    """One of the job's output streams, copied into a file up to a cap; past it the rest is dropped."""

    def __init__(self, path: Path, cap: int):
        self.cap, self.size, self.truncated = cap, 0, False
        self.file = path.open("wb")

    def write(self, chunk: bytes) -> None:
        room = self.cap - self.size
        if room > 0:
            self.file.write(chunk[:room])
            self.size += min(room, len(chunk))
        if len(chunk) > room and not self.truncated:
            self.truncated = True
            self.file.write(f"\n[log truncated: it reached {self.cap} bytes]\n".encode())

    def __enter__(self) -> _Log:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


class _Group:
    """The job's process group. Its leader is reaped only after the group has been killed and kill() does
    nothing from then on, so no signal can reach a group that reused the id."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.cancelled = False
        self._lock = threading.Lock()
        self._reaped = False

    def cancel(self) -> None:
        """Kills the job from any thread (cancellation, deletion); harmless once it has ended."""
        with self._lock:
            if not self._reaped:
                self.cancelled = True
                self._kill()

    def kill(self) -> None:
        with self._lock:
            if not self._reaped:
                self._kill()

    def _kill(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def exited(self) -> bool:
        """Whether the leader has ended; WNOWAIT leaves it a zombie, which keeps its group id ours."""
        return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def reap(self) -> int:
        with self._lock:
            status = self.process.wait()
            self._reaped = True
        return status


def _supervise(group: _Group, logs: dict, deadline: float, output: _OutputMeter) -> str | None:
    """Copies the job's output into the logs until it ends, killing it at the deadline or once it has written
    too much. The reason it was killed, if it was."""
    stopped = None
    with selectors.DefaultSelector() as selector:
        for pipe, stream in logs.items():
            selector.register(pipe, selectors.EVENT_READ, stream)
        while not group.exited():
            if stopped is None:
                now = time.monotonic()
                stopped = "time limit exceeded" if now >= deadline else output.check(now)
                if stopped is not None:
                    group.kill()
            _pump(selector)
        group.kill()  # children it left behind
        until = time.monotonic() + _DRAIN_SECONDS
        while selector.get_map() and time.monotonic() < until:  # still open: output in flight, or an escapee
            _pump(selector)
    return stopped


def _pump(selector: selectors.BaseSelector) -> None:
    for key, _ in selector.select(_TICK):
        chunk = os.read(key.fd, _CHUNK)
        if chunk:
            key.data.write(chunk)
        else:
            selector.unregister(key.fileobj)


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
