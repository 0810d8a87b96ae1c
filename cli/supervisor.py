"""The process supervisor of ``dataapi dev``: runs named commands as children, starts again one that exits
(after a delay that doubles while it keeps failing) and stops them all, last started first.

Each child runs in its own session: a terminal's Ctrl-C reaches the supervisor alone, which then stops the
children in order (the API drains its requests while the workers and Temporal are still there), and a child's
process group is what gets SIGKILLed when it overstays its grace period or leaves something behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Backoff:
    """Delay before starting a child again: ``first`` seconds, doubling with each exit in a row up to ``cap``.
    A child that stayed up ``stable_after`` seconds counts as healthy: its next exit waits ``first`` again."""

    first: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th exit in a row (1 for the first)."""
        return min(self.cap, self.first * 2 ** max(0, failures - 1))


@dataclass
class Child:
    name: str
    command: list[str]
    log_path: Path | None = None
    env: dict[str, str] | None = None  # None: the supervisor's environment
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row, each after less than Backoff.stable_after seconds up
    restart_at: float | None = None  # set while the child waits for its next start
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _stderr(message: str) -> None:
    print(f"dataapi dev: {message}", file=sys.stderr, flush=True)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a child's process group (the child itself, or what it started and left behind)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Supervisor:
    backoff: Backoff = field(default_factory=Backoff)
    grace: float = 10.0  # seconds a child has to exit after SIGINT before its process group is SIGKILLed
    tick: float = 0.2  # how often the children are looked at
    say: Callable[[str], None] = _stderr
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    hurry: bool = False  # a second Ctrl-C: no more grace
    stopped: bool = False

    # --- running ---------------------------------------------------------------------------------------

    def start(self, name: str, command: list[str], log_path: Path | None = None,
              env: dict[str, str] | None = None) -> Child:
        child = Child(name, command, log_path, env)
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        out = open(child.log_path, "ab") if child.log_path else None  # noqa: SIM115  (closed just below)
        try:
            child.popen = subprocess.Popen(  # noqa: S603  (our own binaries, no shell)
                child.command, stdout=out, stderr=subprocess.STDOUT if out else None, env=child.env,
                start_new_session=True)
        finally:
            if out is not None:
                out.close()  # the child holds its own descriptor
        child.started_at, child.restart_at = time.monotonic(), None
        child.starts += 1

    def check(self) -> None:
        """One look at the children: an exited one is reported and scheduled, one whose delay is over starts."""
        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                return
            if child.restart_at is not None:
                if now >= child.restart_at:
                    try:
                        self._spawn(child)
                    except OSError as e:  # e.g. the binary went away: keep trying, no faster than the backoff
                        child.failures += 1
                        delay = self.backoff.delay(child.failures)
                        child.restart_at = now + delay
                        self.say(f"{child.name} could not start ({e}); trying again in {delay:g} s")
                        continue
                    self.say(f"{child.name} started again (pid {child.pid})")
                continue
            if child.popen is None or child.popen.poll() is None:
                continue
            _kill_group(child.popen.pid)  # anything it started dies with it
            up = now - child.started_at
            child.failures = 1 if up >= self.backoff.stable_after else child.failures + 1
            delay = self.backoff.delay(child.failures)
            child.restart_at = now + delay
            self.say(f"{child.name} (pid {child.pid}) {describe_exit(child.popen.returncode)} after {up:.1f} s "
                     f"up; starting it again in {delay:g} s")

    def watch(self) -> None:
        """Looks after the children until ``request_stop`` (a signal handler) is called."""
        while not self.stopping:
            self.check()
            time.sleep(self.tick)

    # --- stopping --------------------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """A signal handler: the first call stops the children in order, a second one kills what is left."""
        if self.stopping:
            self.hurry = True
        self.stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)

    def stop(self) -> None:
        """Last started first: SIGINT, then ``grace`` seconds to exit before its process group is SIGKILLed."""
        self.stopping = True
        if self.stopped:
            return
        self.stopped = True
        for child in reversed(self.children):
            waiting, child.restart_at = child.restart_at is not None, None
            if child.popen is None or waiting:  # a waiting child was reaped, and its group killed, by check()
                continue
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGINT)
                deadline = time.monotonic() + self.grace
                while child.popen.poll() is None and time.monotonic() < deadline and not self.hurry:
                    time.sleep(0.05)
                if child.popen.poll() is None:
                    self.say(f"{child.name} (pid {child.pid}) still running"
                             f"{'' if self.hurry else f' {self.grace:g} s after SIGINT'}; killing it")
            _kill_group(child.popen.pid)
            child.popen.kill()  # in case it left its group: the kill above missed it
            child.popen.wait()
