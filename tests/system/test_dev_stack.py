"""``dataapi dev`` as ``make run`` runs it: a real subprocess, real ports, the guide's flows over real HTTP,
a clean Ctrl-C that leaves no process behind, and state (jobs, credentials) that survives a restart."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import DATAAPI, alive, descendants, free_port, stop_by_pid

SYNC = "/api/v1/data-api/default/vendas-por-regiao/execute"
ASYNC = "/api/v1/data-api/default/relatorio-mensal/execute"
CALLBACK = "https://my-system.com/webhook/result"

pytestmark = pytest.mark.slow


class DevStack:
    """One ``dataapi dev`` process on a var dir, with fresh ports each start."""

    def __init__(self, root: Path):
        self.root, self.var = root, root / "var"
        self.proc: subprocess.Popen | None = None
        self.children: dict[int, str] = {}

    def start(self, name: str, **extra_env: str) -> None:
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_")}
        env.update(DATAAPI_VAR_DIR=str(self.var), DATAAPI_API_PORT=str(self.api_port),
                   DATAAPI_TEMPORAL_ADDRESS=f"127.0.0.1:{self.temporal_port}",
                   DATAAPI_TEMPORAL_UI_PORT=str(self.ui_port), DATAAPI_LOG_LEVEL="WARNING", **extra_env)
        self.stdout = self.root / f"{name}.out"
        with self.stdout.open("wb") as out:
            self.proc = subprocess.Popen([str(DATAAPI), "dev"], cwd=self.root, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.api_port}"

    def wait_ready(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        while True:
            assert self.proc.poll() is None, f"dataapi dev exited with {self.proc.returncode}:\n{self.output()}"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"/readyz not 200 within {within}s:\n{self.output()}"
            time.sleep(0.25)
        self.children = descendants(self.proc.pid)

    def roles(self) -> dict[str, int]:
        """The dev process's live children by role, read from their command lines."""
        found = {}
        for pid in descendants(self.proc.pid):
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if ppid == self.proc.pid:
                role = ("temporal" if "start-dev" in args else "api" if "api" in args else
                        "worker" if "queries,callbacks" in args else "jobs-worker" if "jobs" in args else args[0])
                found[role] = pid
        return found

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def interrupt(self, within: float = 15.0) -> None:
        """Ctrl-C: the dev process and everything it started are gone within ``within`` seconds."""
        self.children.update(descendants(self.proc.pid))
        assert len(self.children) >= 3, f"expected Temporal, a worker and the API: {self.children}"
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dataapi dev still running {within}s after SIGINT:\n{self.output()}")
        deadline = time.monotonic() + 2  # a grandchild may take a moment to be reaped
        while alive(self.children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive(self.children) == [], f"processes left behind: {alive(self.children)}"

    def cleanup(self) -> None:
        """After a failure: stop what this test started, by pid."""
        stop_by_pid([self.proc] if self.proc is not None else [], self.children, grace=15)


@pytest.fixture
def dev(tmp_path):
    stack = DevStack(tmp_path)
    yield stack
    stack.cleanup()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def poll(api: httpx.Client, token: str, url: str, within: float = 30.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        r = api.get(url, headers=bearer(token))
        assert r.status_code == 200, r.text
        if r.json()["status"] != "processing":
            return r.json()
        assert time.monotonic() < deadline, f"job still processing: {r.json()}"
        time.sleep(0.2)


def test_dev_stack_runs_the_guide_stops_cleanly_and_keeps_state(dev):
    dev.start("first")
    dev.wait_ready()
    creds = json.loads((dev.var / "demo-credentials.json").read_text())
    assert set(creds) == {"company_slug", "api_key", "api_secret"} and creds["company_slug"] == "acme"

    with httpx.Client(base_url=dev.base, timeout=60) as api:
        # Step 1: the API key for tokens
        r = api.post("/api/v1/auth/api-key", json=creds)
        assert r.status_code == 200, r.text
        pair = r.json()
        assert set(pair) >= {"access_token", "refresh_token", "access_token_expires_in", "refresh_token_expires_in",
                             "user"}
        assert pair["access_token_expires_in"] == 600 and pair["refresh_token_expires_in"] == 604800
        token = pair["access_token"]

        # Step 2: sync
        r = api.post(SYNC, json={"parameter_values": {"data_inicio": "2026-01-01", "regiao": "Sul"}},
                     headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["columns"] == [{"name": "regiao", "type": "varchar"}, {"name": "total", "type": "decimal"}]
        assert len(body["rows"]) == 1 and body["rows"][0]["regiao"] == "Sul" and body["rows"][0]["total"] > 0
        assert body["row_count"] == 1 and body["truncated"] is False and body["max_rows"] == 10000

        # Step 2 (alternative) and 3: async, then polling
        r = api.post(ASYNC, json={"parameter_values": {"mes": "2026-03"}, "callback_url": CALLBACK},
                     headers=bearer(token))
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["status"] == "processing"
        assert accepted["polling_url"] == f"/api/v1/data-api/default/relatorio-mensal/jobs/{accepted['job_id']}"
        job = poll(api, token, accepted["polling_url"])
        assert job["status"] == "completed" and job["error"] is None, job
        assert job["result"]["row_count"] > 0 and job["completed_at"]

        # Token refresh: works once; reusing the old refresh token is refused
        r = api.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert r.status_code == 200 and r.json()["access_token"], r.text
        r = api.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert r.status_code == 401, r.text

        r = api.get("/api/v1/auth/permissions", headers=bearer(token))
        assert r.status_code == 200, r.text
        actions = r.json()["actions"]
        assert {"data_api:execute", "data_api:get_job"} <= set(actions) and actions == sorted(actions)
        assert not [a for a in actions if a.startswith("admin:")], "the demo integration user is no admin"

    deadline = time.monotonic() + 15  # the UI may start serving a moment after the frontend
    while True:
        try:
            ui = httpx.get(f"http://127.0.0.1:{dev.ui_port}/", timeout=3)
            if ui.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"Temporal UI on {dev.ui_port} does not answer 200"
        time.sleep(0.3)

    banner = dev.output()
    assert creds["api_key"] in banner and creds["api_secret"] in banner
    assert "curl -X POST" in banner and f"http://localhost:{dev.api_port}" in banner

    # /metrics is closed: the stack made a token once (0600), says where it is, and the API requires it
    token_file = dev.var / "metrics-token"
    metrics_token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and str(token_file) in banner
    assert httpx.get(f"{dev.base}/metrics", timeout=10).status_code == 401
    r = httpx.get(f"{dev.base}/metrics", headers=bearer(metrics_token), timeout=10)
    assert r.status_code == 200 and "dataapi_http_request_duration_seconds" in r.text

    dev.interrupt()

    # Again on the same var dir: the job and the credentials survived.
    dev.start("second")
    dev.wait_ready()
    assert json.loads((dev.var / "demo-credentials.json").read_text()) == creds
    assert token_file.read_text().strip() == metrics_token  # made once, kept across restarts
    with httpx.Client(base_url=dev.base, timeout=60) as api:
        r = api.post("/api/v1/auth/api-key", json=creds)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = api.get(accepted["polling_url"], headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed" and r.json()["result"] == job["result"]
    dev.interrupt()


def environ(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


def restarted(dev: DevStack, role: str, old: int, within: float = 20.0) -> int:
    """The pid of ``role``'s next process once the supervisor has started it again."""
    deadline = time.monotonic() + within
    while True:
        pid = dev.roles().get(role)
        if pid is not None and pid != old:
            return pid
        assert time.monotonic() < deadline, f"{role} not started again within {within}s:\n{dev.output()}"
        time.sleep(0.1)


def test_dev_starts_a_crashed_child_again_and_leaves_the_others_running(dev):
    """SIGKILL of the worker, then of the API: each comes back (a new pid, after the supervisor's backoff) and
    works again, while the other children keep their pids; Ctrl-C then stops everything, leaving no process."""
    dev.start("supervised", DATAAPI_SECRET_KEY="dev-stack-test-" + "k" * 40)
    dev.wait_ready()
    pids = dev.roles()
    assert set(pids) == {"temporal", "worker", "jobs-worker", "api"}, pids
    groups = set(pids.values())  # each child leads its own process group
    # The jobs worker runs tenants' code: the secret key reaches the other processes, not that one.
    assert any(v.startswith("DATAAPI_SECRET_KEY=") for v in environ(pids["worker"]))
    assert not any(v.startswith("DATAAPI_SECRET_KEY=") for v in environ(pids["jobs-worker"]))
    creds = json.loads((dev.var / "demo-credentials.json").read_text())

    with httpx.Client(base_url=dev.base, timeout=60) as api:
        r = api.post("/api/v1/auth/api-key", json=creds)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]

        def sync_execute() -> None:
            r = api.post(SYNC, json={"parameter_values": {"data_inicio": "2026-01-01", "regiao": "Sul"}},
                         headers=bearer(token))
            assert r.status_code == 200 and r.json()["row_count"] == 1, r.text

        killed_worker = pids["worker"]
        os.kill(killed_worker, signal.SIGKILL)
        pids["worker"] = restarted(dev, "worker", killed_worker)
        groups.add(pids["worker"])
        assert dev.roles() == pids
        sync_execute()
        r = api.post(ASYNC, json={"parameter_values": {"mes": "2026-03"}}, headers=bearer(token))
        assert r.status_code == 202, r.text
        job = poll(api, token, r.json()["polling_url"])
        assert job["status"] == "completed" and job["result"]["row_count"] > 0, job

        killed_api = pids["api"]
        os.kill(killed_api, signal.SIGKILL)
        pids["api"] = restarted(dev, "api", killed_api)
        groups.add(pids["api"])
        deadline = time.monotonic() + 30
        while True:
            try:
                if api.get("/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"/healthz not 200 after the API's restart:\n{dev.output()}"
            time.sleep(0.2)
        assert dev.roles() == pids
        sync_execute()

        # The jobs worker, in its own process, runs a repository job.
        key = f"{creds['api_key']}.{creds['api_secret']}"
        headers = {"username": "demo-integration", "organization_id": "acme", "application_id": "demo-app",
                   "client_id": "demo-client", "x-api-key": key}
        r = api.post("/api/v1/job/execute", headers={**headers, "repository_id": "202009231629398695"},
                     files={"file": ("vendas.csv", b"regiao,valor\nSul,10\n", "text/csv")},
                     data={"params": json.dumps({"a": 10, "b": 20})})
        assert r.status_code == 201, r.text
        result_url = f"/api/v1/job/{r.json()['job_id']}/result"
        deadline = time.monotonic() + 30
        while (r := api.get(result_url, headers=headers)).status_code == 202:
            assert time.monotonic() < deadline, "the repository job did not finish"
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["output"]["value"] == 600, r.text

    out = dev.output()
    assert f"worker (pid {killed_worker}) was killed by SIGKILL" in out, out
    assert f"api (pid {killed_api}) was killed by SIGKILL" in out, out
    assert "starting it again in 1 s" in out, out
    assert dev.roles() == pids

    dev.interrupt()
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
    left = [line for line in ps.splitlines() if int(line.split()[1]) in groups]
    assert left == [], f"processes left in the children's groups: {left}"
