"""Starting a repository job's process: in the bubblewrap sandbox (``Sandboxed``, always in production) or, for
development only, as a plain process group of the worker (``Unsandboxed``, DATAAPI_UNSANDBOXED_JOBS). Both
give ``start()`` a process with its stdout and stderr on pipes, in a session of its own."""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from activities import sandbox as sb
from activities.sandbox import Sandbox
from dataapi import json_values
from dataapi.statuses import Runner

if TYPE_CHECKING:
    from activities.runners import RunLimits

log = logging.getLogger("dataapi.activities.launchers")
SQL_RUNNER = Path(__file__).with_name("sql_runner.py")
SQL_RUNNER_MODULES = [Path(json_values.__file__)]  # standard library only: mounted beside sql_runner.py


def command(runner: str, code: dict, python: str, job_dir: str, sql_runner: str) -> list[str]:
    if runner == Runner.SQL:
        # Isolated (-I): sys.path is the standard library and site-packages, never the script's folder; -I
        # also ignores PYTHON* variables, hence -B.
        return [python, "-I", "-B", sql_runner, job_dir]
    # Not -I: it would drop the entry point's folder from sys.path (no `import helpers`) and ignore the
    # PYTHON* variables set on purpose; the environment is built from nothing anyway, and the worker's
    # site-packages (pandas, duckdb...) stay importable.
    return [python, f"{job_dir}/repo/{code['entry_point']}"]


class Sandboxed:
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
        args = command(runner, code, python, sb.JOB_DIR, sb.SQL_RUNNER_INSIDE)
        self.args = sb.bwrap_command(bwrap, job_dir, args, limits, marker_w, data,
                                     [(str(SQL_RUNNER), sb.SQL_RUNNER_INSIDE),
                                      *((str(m), str(Path(sb.SQL_RUNNER_INSIDE).with_name(m.name)))
                                        for m in SQL_RUNNER_MODULES)] if runner == Runner.SQL else [])
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

    def __enter__(self) -> Sandboxed:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds:
            with suppress(OSError):
                os.close(fd)
        if self.cgroup is not None:
            self.cgroup.close()


class Unsandboxed:
    """The job as a plain process group of the worker (DATAAPI_UNSANDBOXED_JOBS): development only."""

    def __init__(self, runner: str, code: dict, job_dir: Path, limits: RunLimits):
        log.warning("DATAAPI_UNSANDBOXED_JOBS is on: this repository job runs WITHOUT a sandbox, as the "
                    "worker's user, and can read the worker's files and reach its network")
        self.job_dir, self.limits = job_dir, limits
        self.args = command(runner, code, sys.executable, str(job_dir), str(SQL_RUNNER))

    def start(self) -> subprocess.Popen:
        environment = {**sb.environment(), "HOME": str(self.job_dir)}
        environment.pop("TMPDIR")
        return subprocess.Popen(  # noqa: S603 - our interpreter, paths we wrote; the code is the job's own
            self.args, cwd=self.job_dir, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_rlimits(self.limits))

    def failed_to_start(self) -> bool:
        return False

    def __enter__(self) -> Unsandboxed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


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
