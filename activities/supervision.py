"""Watching a running repository job: its process group, its output streams copied to capped logs, what it adds
to its folder, and its wall-clock deadline. ``supervise`` returns why it killed the job, if it did."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

_TICK = 0.05  # seconds between looks at the process (and the deadline)
_DRAIN_SECONDS = 1.0  # how long leftover output may take to arrive once the job has ended
_CHUNK = 64 << 10
_MEASURE_EVERY = 0.5  # seconds between measures of what the job has written
OUTPUT_MAX_ENTRIES = 100_000  # files and folders a job may add to its folder


class ProcessGroup:
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


class CappedLog:
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

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


class OutputMeter:
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


def supervise(group: ProcessGroup, logs: dict, deadline: float, output: OutputMeter) -> str | None:
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
