"""A repository job as the runners' tests build it (its folder, its Python code, its logs), and the host's
processes they look for afterwards (a job's pids are its own, so the host sees them by command line only)."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path


def job_folder(tmp_path: Path, params: dict | None = None, inputs: dict[str, str] | None = None) -> Path:
    job = tmp_path / "job"
    for sub in ("inputs", "output", "logs"):
        (job / sub).mkdir(parents=True)
    (job / "params.json").write_text(json.dumps(params or {}))
    for name, text in (inputs or {}).items():
        (job / "inputs" / name).parent.mkdir(parents=True, exist_ok=True)
        (job / "inputs" / name).write_text(text)
    return job


def python(source: str, **files: str) -> dict:
    return {"files": {"main.py": textwrap.dedent(source), **files}, "entry_point": "main.py"}


def log(job: Path, name: str) -> str:
    return (job / "logs" / f"{name}.log").read_text()


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def host_processes(argument: str) -> list[int]:
    """The live processes on the host whose command line has this argument (a job's pids are its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0") and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def wait_gone(argument: str, seconds: float = 3) -> bool:
    until = time.monotonic() + seconds
    while host_processes(argument):
        if time.monotonic() > until:
            return False
        time.sleep(0.02)
    return True
