"""The supervisor of ``dataapi dev`` on small shell children: exits reported and followed by a start after a
doubling delay (reset once a child stayed up), a crash loop that costs next to nothing, and a stop that goes
last-started-first, gives a grace period, then SIGKILLs the child's whole process group.

The real stack under the supervisor (a worker and the API SIGKILLed and coming back) is in
tests/system/test_dev_stack.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cli.dev import jobs_worker_env
from cli.supervisor import Backoff, Supervisor, describe_exit
from dataapi.settings import Settings


def drive(sup: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sup.check()
        time.sleep(sup.tick)


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_for(path: Path, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written within {within}s"
        time.sleep(0.02)


@pytest.fixture
def messages() -> list[str]:
    return []


@pytest.fixture
def supervisor(messages):
    sup = Supervisor(backoff=Backoff(first=0.1, cap=0.4, stable_after=60), grace=5, tick=0.02,
                     say=messages.append)
    yield sup
    sup.hurry = True
    sup.stop()


def test_the_delay_doubles_from_first_up_to_cap():
    assert [Backoff().delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert [Backoff(first=0.5, cap=3).delay(n) for n in range(1, 6)] == [0.5, 1, 2, 3, 3]


def test_exit_statuses_read_as_such():
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-15) == "was killed by SIGTERM"


def test_a_child_that_exits_is_started_again_after_a_doubling_delay_and_each_exit_is_reported(supervisor, messages):
    child = supervisor.start("flaky", ["sh", "-c", "exit 3"])
    drive(supervisor, 1.5)
    exits = [m for m in messages if "exited" in m]
    assert all(m.startswith("flaky (pid ") and "exited with status 3 after" in m for m in exits), messages
    delays = [m.rsplit("again in ", 1)[1] for m in exits]
    assert delays[:4] == ["0.1 s", "0.2 s", "0.4 s", "0.4 s"], messages
    starts = [m for m in messages if "started again" in m]
    assert len(starts) == child.starts - 1 >= 3, messages
    # 1.5 s hold at most the start and its restarts after 0.1, 0.2, 0.4 and 0.4 s, however fast it dies
    assert child.starts <= 5, messages


def test_a_crash_loop_does_not_spin(supervisor, messages):
    """A child that dies at once, for two seconds: the supervisor sleeps between looks and between starts."""
    child = supervisor.start("crasher", ["sh", "-c", "exit 1"])
    cpu = time.process_time()
    drive(supervisor, 2.0)
    assert time.process_time() - cpu < 0.5
    assert child.starts <= 2.0 / 0.4 + 3, messages


def test_a_child_killed_by_a_signal_is_reported_so(supervisor, messages):
    child = supervisor.start("victim", ["sh", "-c", "kill -9 $$"])
    first = child.pid
    drive(supervisor, 0.3)
    assert messages[0].startswith(f"victim (pid {first}) ") and "was killed by SIGKILL" in messages[0]
    assert child.starts >= 2


def test_a_child_that_stayed_up_starts_again_after_the_first_delay(supervisor, messages):
    supervisor.backoff = Backoff(first=0.1, cap=10, stable_after=0.2)
    child = supervisor.start("steady", ["sh", "-c", "sleep 0.3; exit 1"])
    drive(supervisor, 1.6)
    exits = [m for m in messages if "exited" in m]
    assert len(exits) >= 3 and all(m.endswith("again in 0.1 s") for m in exits), messages
    assert child.failures == 1


def test_a_child_that_cannot_be_started_again_is_retried_with_the_same_backoff(supervisor, messages, tmp_path):
    script = tmp_path / "once.sh"
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    child = supervisor.start("gone", [str(script)])
    child.popen.wait()
    script.unlink()
    drive(supervisor, 0.5)
    failed = [m for m in messages if "could not start" in m]
    assert failed and failed[0].startswith("gone could not start (") and failed[0].endswith("again in 0.2 s")
    assert child.starts == 1 and len(failed) <= 2, messages


def test_no_start_after_a_stop_was_asked_for(supervisor):
    child = supervisor.start("flaky", ["sh", "-c", "exit 3"])
    drive(supervisor, 0.05)
    supervisor.request_stop()
    drive(supervisor, 0.5)
    supervisor.stop()
    assert child.starts == 1 and not child.running()


def test_stop_goes_last_started_first_and_kills_what_overstays_with_its_group(supervisor, messages, tmp_path):
    order = tmp_path / "order"
    for name in ("temporal", "worker", "api"):
        supervisor.start(name, ["sh", "-c", f'trap "echo {name} >> {order}; exit 0" INT; touch {tmp_path / name}; '
                                            "while :; do sleep 0.05; done"])
    stubborn = supervisor.start("stubborn", ["sh", "-c", f'trap "" INT; sleep 60 & echo $! > {tmp_path / "bg"}; '
                                                         "while :; do sleep 0.05; done"])
    for name in ("temporal", "worker", "api", "bg"):
        wait_for(tmp_path / name)
    background = int((tmp_path / "bg").read_text())
    assert running(background)
    supervisor.grace = 0.5
    began = time.monotonic()
    supervisor.stop()
    assert order.read_text().split() == ["api", "worker", "temporal"]
    assert 0.5 <= time.monotonic() - began < 3
    assert "stubborn" in messages[-1] and "killing it" in messages[-1]
    assert all(not c.running() for c in supervisor.children) and stubborn.popen.returncode == -9
    deadline = time.monotonic() + 2
    while running(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(background), "the stubborn child's background process outlived it"


def test_a_second_stop_request_kills_without_waiting(supervisor, tmp_path):
    supervisor.grace = 30
    supervisor.start("stubborn", ["sh", "-c", f'trap "" INT; touch {tmp_path / "ready"}; '
                                              "while :; do sleep 0.05; done"])
    wait_for(tmp_path / "ready")
    supervisor.request_stop()
    supervisor.request_stop()
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 2 and not supervisor.children[0].running()


def test_the_jobs_worker_gets_no_key_it_has_no_use_for(monkeypatch):
    for name, value in {"DATAAPI_SECRET_KEY": "s", "DATAAPI_JWT_KEYSET": "{}", "DATAAPI_METRICS_TOKEN": "m",
                        "DATAAPI_CODEC_TOKEN": "c", "DATAAPI_PAYLOAD_KEYSET": "{}",
                        "DATAAPI_DATABASE_URL": "sqlite://"}.items():
        monkeypatch.setenv(name, value)
    env = jobs_worker_env(Settings(worker_metrics_port=9464))
    assert not {"DATAAPI_SECRET_KEY", "DATAAPI_JWT_KEYSET", "DATAAPI_METRICS_TOKEN", "DATAAPI_CODEC_TOKEN"} & set(env)
    assert env["DATAAPI_PAYLOAD_KEYSET"] == "{}" and env["DATAAPI_DATABASE_URL"] == "sqlite://"
    assert env["DATAAPI_WORKER_METRICS_PORT"] == "9465"  # beside the other worker's 9464
    monkeypatch.delenv("DATAAPI_WORKER_METRICS_PORT", raising=False)
    assert "DATAAPI_WORKER_METRICS_PORT" not in jobs_worker_env(Settings(worker_metrics_port=0))
