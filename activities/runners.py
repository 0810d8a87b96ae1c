"""Runs a repository's code as a job: in its own process and process group, inside the job folder.

The job folder is the contract with the job activity::

    <job_dir>/inputs/      the uploaded input files (validated)
    <job_dir>/params.json  the job's params (a JSON object)
    <job_dir>/output/      what the job writes (packed later into output.zip)
    <job_dir>/logs/        stdout.log and stderr.log, written here (platform.log is the activity's)
    <job_dir>/repo/        the repository's code, written here
    <job_dir>/result.json  written by the job (python) or by sql_runner.py (sql)

The process runs in the job folder with a scrubbed environment (nothing of the worker's: no DATAAPI_*
settings, no database URLs) and no inherited file descriptors but its stdin (/dev/null), stdout and stderr.
Limits are set in the child before exec: address space (RLIMIT_AS), size of any one file it writes
(RLIMIT_FSIZE: Python ignores SIGXFSZ, so a job gets "File too large" and fails), no core dumps; the wall-clock
limit is enforced here by killing the whole process group.
stdout and stderr come through pipes and are copied to the logs up to ``max_log_bytes`` each, the rest
dropped: a chatty job neither fails (as it would under RLIMIT_FSIZE writing a log file itself) nor fills the
disk, and once we stop reading nothing more reaches the logs.

This is a boundary for resources and crashes, not a sandbox for Python jobs: they run as the worker's user
and can read what it can read; root may raise its own rlimits; RLIMIT_NPROC is not set (it counts every
process and thread of the user, the worker's included, and binds no root); a process that leaves the group
(setsid) escapes the kill. Isolation needs a separate user, a container or cgroups. SQL jobs are confined by
DuckDB itself (see sql_runner.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import orjson

RESULT_MAX_BYTES = 16 << 20
CODE_MAX_BYTES = 5 << 20
CODE_MAX_FILES = 1000
SQL_RUNNER = Path(__file__).with_name("sql_runner.py")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TICK = 0.05  # seconds between looks at the process (and the deadline)
_DRAIN_SECONDS = 1.0  # how long leftover output may take to arrive once the job has ended
_CHUNK = 64 << 10


@dataclass(frozen=True)
class RunLimits:
    time_limit_seconds: float = 3600
    memory_bytes: int = 2 << 30  # address space (RLIMIT_AS), which is more than resident memory
    max_output_bytes: int = 1 << 30  # any one file the job writes (RLIMIT_FSIZE)
    max_log_bytes: int = 10 << 20  # each of stdout.log and stderr.log; the rest is dropped


@dataclass
class RunResult:
    ok: bool
    exit_code: int | None  # None when killed by a signal or never started
    error: str | None  # short and safe to show the caller; the details are in the logs
    duration_ms: int


class RepositoryCodeError(ValueError):
    """A repository's code definition is invalid; the message says what to fix."""


# --- code definitions -----------------------------------------------------------------------------------

def validate_code(runner: str, code: dict) -> dict:
    """The code checked and normalised: defaults filled in, nothing else kept.

    python: ``{"files": {relative_path: text}, "entry_point": "main.py"}``
    sql: ``{"script": "<statements>", "outputs": [table, ...], "result": "<one SELECT>"}``
    """
    if runner == "python":
        return _python_code(code)
    if runner == "sql":
        return _sql_code(code)
    raise RepositoryCodeError(f"unknown runner {runner!r}: use python or sql")


def _python_code(code: dict) -> dict:
    _only_keys(code, {"files", "entry_point"})
    files = code.get("files")
    if not isinstance(files, dict) or not files:
        raise RepositoryCodeError("files must be a non-empty object of {path: text}")
    if len(files) > CODE_MAX_FILES:
        raise RepositoryCodeError(f"at most {CODE_MAX_FILES} files")
    total = 0
    for path, text in files.items():
        _check_path(path)
        if not isinstance(text, str):
            raise RepositoryCodeError(f"file {path!r} must be text")
        total += _utf8_size(text, f"file {path!r}")
    if total > CODE_MAX_BYTES:
        raise RepositoryCodeError(f"the files add up to more than {CODE_MAX_BYTES >> 20} MB")
    folders = {parent.as_posix() for path in files for parent in PurePosixPath(path).parents}
    if clash := sorted(folders.intersection(files)):
        raise RepositoryCodeError(f"{clash[0]!r} cannot be both a file and a folder")
    entry_point = code.get("entry_point", "main.py")
    if not isinstance(entry_point, str) or entry_point not in files:
        raise RepositoryCodeError(f"entry_point {entry_point!r} must be one of the files")
    return {"files": dict(files), "entry_point": entry_point}


def _check_path(path) -> None:
    if not isinstance(path, str) or not path:
        raise RepositoryCodeError("file paths must be non-empty strings")
    problem = (
        "must be relative" if path.startswith("/")
        else "must use / between folders, not \\" if "\\" in path
        else "must not contain control characters" if _CONTROL.search(path)
        else "must not contain .." if ".." in path.split("/")
        else "must not have empty or . segments" if {"", "."} & set(path.split("/"))
        else "has a name longer than 255 bytes" if any(len(p.encode()) > 255 for p in path.split("/"))
        else None
    )
    if problem:
        raise RepositoryCodeError(f"file path {path!r} {problem}")


def _sql_code(code: dict) -> dict:
    _only_keys(code, {"script", "outputs", "result"})
    script, outputs, result = code.get("script", ""), code.get("outputs", []), code.get("result")
    if not isinstance(script, str):
        raise RepositoryCodeError("script must be text: DuckDB SQL statements")
    if not isinstance(outputs, list) or not all(isinstance(name, str) for name in outputs):
        raise RepositoryCodeError("outputs must be a list of table names")
    for name in outputs:
        if not _IDENTIFIER.fullmatch(name):
            raise RepositoryCodeError(
                f"output {name!r} is not a valid table name: letters, digits and _, not starting with a digit, "
                "at most 63 characters")
    if len({name.lower() for name in outputs}) < len(outputs):
        raise RepositoryCodeError("outputs name the same table twice")
    if not isinstance(result, str) or not result.strip():
        raise RepositoryCodeError("result is required: a SELECT whose rows make the job's result")
    if _utf8_size(script, "script") + _utf8_size(result, "result") > CODE_MAX_BYTES:
        raise RepositoryCodeError(f"script and result add up to more than {CODE_MAX_BYTES >> 20} MB")
    import duckdb  # here: the API process (which validates) pays for DuckDB only when a SQL repository is saved

    with duckdb.connect(":memory:") as con:  # parsing only: nothing runs here
        try:
            con.extract_statements(script)
        except duckdb.Error as e:
            raise RepositoryCodeError(f"script: {e}") from None
        try:
            statements = con.extract_statements(result)
        except duckdb.Error as e:
            raise RepositoryCodeError(f"result: {e}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise RepositoryCodeError("result must be a single SELECT statement")
    return {"script": script, "outputs": list(outputs), "result": result}


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON lets through
        raise RepositoryCodeError(f"{what} is not valid Unicode text") from None


def _only_keys(code, allowed: set[str]) -> None:
    if not isinstance(code, dict):
        raise RepositoryCodeError("code must be a JSON object")
    if unknown := sorted(set(code) - allowed):
        raise RepositoryCodeError(f"unknown code field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")


# --- running --------------------------------------------------------------------------------------------

def run_job(runner: str, code: dict, job_dir: Path, limits: RunLimits,
            on_start: Callable[[Callable[[], None]], None] | None = None) -> RunResult:
    """Writes repo/, runs the job to its end (or its time limit, or a kill) and judges it.

    Blocking: call it from a worker thread. ``on_start`` receives, as soon as the process exists, a function
    that kills it (the whole group) from any thread; the result then says "killed".
    """
    job_dir = Path(job_dir).resolve()
    try:
        code = validate_code(runner, code)
    except RepositoryCodeError as e:  # refused when the repository was saved; kept out of the run all the same
        return RunResult(ok=False, exit_code=None, error=f"invalid repository code: {e}", duration_ms=0)
    command = _prepare(runner, code, job_dir)
    logs = job_dir / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    cap = limits.max_log_bytes
    with _Log(logs / "stdout.log", cap) as out, _Log(logs / "stderr.log", cap) as err:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, paths we wrote; the code is the job's own
            command, cwd=job_dir, env=_environment(job_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_rlimits(limits))
        group = _Group(process)
        try:
            if on_start is not None:
                on_start(group.cancel)
            timed_out = _supervise(group, {process.stdout: out, process.stderr: err},
                                   started + limits.time_limit_seconds)
        finally:
            group.kill()  # on any way out, nothing of the job outlives this call
            status = group.reap()
            process.stdout.close()
            process.stderr.close()
    duration_ms = int((time.monotonic() - started) * 1000)
    error = _failure(group.cancelled, timed_out, status, logs / "stderr.log") or _check_result(job_dir / "result.json")
    return RunResult(ok=error is None, exit_code=status if status >= 0 else None, error=error, duration_ms=duration_ms)


def _prepare(runner: str, code: dict, job_dir: Path) -> list[str]:
    """Writes repo/ afresh and returns the command that runs the job."""
    repo = job_dir / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    (job_dir / "result.json").unlink(missing_ok=True)  # only this run's result counts
    if runner == "sql":
        (repo / "sql.json").write_text(json.dumps(code), encoding="utf-8")
        # Isolated (-I): sys.path is the standard library and site-packages, never the script's folder; -I
        # also ignores PYTHON* variables, hence -B.
        return [sys.executable, "-I", "-B", str(SQL_RUNNER), str(job_dir)]
    for path, text in code["files"].items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    # Not -I: it would drop the entry point's folder from sys.path (no `import helpers`) and ignore the
    # PYTHON* variables set on purpose; the environment is scrubbed anyway, and the worker's site-packages
    # (pandas, duckdb...) stay importable.
    return [sys.executable, str(repo / code["entry_point"])]


def _environment(job_dir: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(job_dir),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        # glibc reserves 64 MB of address space per malloc arena, up to 8 arenas per core: under RLIMIT_AS a
        # threaded job (DuckDB, BLAS) on a many-core host would run out of address space with little in use.
        "MALLOC_ARENA_MAX": "2",
    }


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _rlimits(limits: RunLimits) -> Callable[[], None]:
    """The child's limits, computed here so that the child (between fork and exec) only calls setrlimit."""
    values = []
    for which, wanted in ((resource.RLIMIT_AS, limits.memory_bytes),
                          (resource.RLIMIT_FSIZE, limits.max_output_bytes),
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


def _supervise(group: _Group, logs: dict, deadline: float) -> bool:
    """Copies the job's output into the logs until it ends, killing it at the deadline. True if it did."""
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for pipe, log in logs.items():
            selector.register(pipe, selectors.EVENT_READ, log)
        while not group.exited():
            if not timed_out and time.monotonic() >= deadline:
                group.kill()
                timed_out = True
            _pump(selector)
        group.kill()  # children it left behind
        until = time.monotonic() + _DRAIN_SECONDS
        while selector.get_map() and time.monotonic() < until:  # still open: output in flight, or an escapee
            _pump(selector)
    return timed_out


def _pump(selector: selectors.BaseSelector) -> None:
    for key, _ in selector.select(_TICK):
        chunk = os.read(key.fd, _CHUNK)
        if chunk:
            key.data.write(chunk)
        else:
            selector.unregister(key.fileobj)


def _failure(cancelled: bool, timed_out: bool, status: int, stderr_log: Path) -> str | None:
    if cancelled:
        return "killed"
    if timed_out:
        return "time limit exceeded"
    if status < 0:
        try:
            return f"killed by signal {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    if status > 0:
        return "memory limit exceeded" if _ran_out_of_memory(stderr_log) else f"exited with status {status}"
    return None


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
