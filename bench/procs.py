"""The processes the harness starts (each in its own process group, so that it can stop the whole group)
and their resident memory, read from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class Processes:
    """Every process of a run. ``stop_all`` ends them: SIGINT to each group, then SIGKILL after a grace."""

    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict, cwd: Path | None = None) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def check(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")

    def stop_all(self, grace: float = 10.0) -> None:
        running = [p for p in reversed(self.procs) if p.popen.poll() is None]
        for p in running:
            _signal_group(p.pid, signal.SIGINT)
        deadline = time.monotonic() + grace
        for p in running:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(p.pid, signal.SIGKILL)  # also whatever the leader left behind in its group
            if p.popen.poll() is None:
                p.popen.wait(5)
        self.procs.clear()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_http(url: str, procs: Processes, within: float = 60.0, ok=(200,)) -> None:
    """Until ``url`` answers one of ``ok``; fails early when one of the processes died."""
    deadline = time.monotonic() + within
    while True:
        procs.check()
        try:
            if httpx.get(url, timeout=2).status_code in ok:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {within:g} s")
        time.sleep(0.2)


# --- resident memory ------------------------------------------------------------------------------------

def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rss_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return kb / 1024 if kb is not None else None


def _reset_peak(pid: int) -> bool:
    """Resets the kernel's peak RSS (VmHWM) of a process we own (Linux >= 4.0); False when refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (its own threads, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessMonitor:
    """Peak resident memory and CPU time of some processes while a block runs. Where the kernel lets us reset
    a process's peak (VmHWM), the exact peak is read at the end; only the others are sampled (VmRSS every
    ``interval`` seconds, from a thread). The sampling thread is left out when it is not needed: on 2 cores
    its 100 wake-ups a second took CPU and the GIL from the load generator it ran beside."""

    def __init__(self, pids: dict[str, int], interval: float = 0.01):
        self.pids, self.interval = pids, interval
        self.before: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._exact: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ProcessMonitor:
        for name, pid in self.pids.items():
            self.before[name] = self.peak[name] = rss_mb(pid) or 0.0
            self._exact[name] = _reset_peak(pid)
            self.cpu[name] = -(cpu_seconds(pid) or 0.0)
        if not all(self._exact.values()):
            self._thread.start()
        return self

    def _sample(self) -> None:
        sampled = {name: pid for name, pid in self.pids.items() if not self._exact[name]}
        while not self._stop.wait(self.interval):
            for name, pid in sampled.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid) or 0.0)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for name, pid in self.pids.items():
            hwm = _status_kb(pid, "VmHWM") if self._exact[name] else None
            last = hwm / 1024 if hwm is not None else rss_mb(pid) or 0.0  # a sampled process: one last sample
            self.peak[name] = max(self.peak[name], last)
            self.cpu[name] += cpu_seconds(pid) or 0.0

    def report(self) -> dict:
        return {name: {"before_mb": round(self.before[name], 1), "peak_mb": round(self.peak[name], 1),
                       "growth_mb": round(self.peak[name] - self.before[name], 1), "exact_peak": self._exact[name],
                       "cpu_s": round(self.cpu[name], 2)} for name in self.pids}
