"""The stack's parts as real processes, for the tests that kill and restart them: free ports, process trees
read from /proc, a topology of named processes (spawned with one shared environment, SIGKILLed by pid, started
again with the same command), a worker process of a test's settings, PostgreSQL stopped and started, and the
tenant an operator creates first.

Used by the system tests (tests/system), the killed workers among them, and the fault tests of tests/chaos/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from cli.demo import HERE as DEMO
from cli.demo import REPOSITORY, endpoint_file, write_sales_csv
from cli.dev import temporal_command
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.codec import new_keyset as new_payload_keyset
from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint
from dataapi.db import make_engine, session_scope
from dataapi.identity import service as identity
from dataapi.jobs_api.repositories import upsert_repository
from dataapi.secrets import new_keyset
from dataapi.settings import Settings
from tests.conftest import unique_slug

DATAAPI = Path(sys.executable).parent / "dataapi"
HOSTNAME = socket.gethostname()
CSV = b"regiao,valor\nSul,10\nNorte,20\nSul,5\n"

# Seconds of DuckDB work (1.8 to 5 s alone on the quiet 2-core machines seen, more when a few run at once), long
# enough that several are seen running together, and beyond the 1 s local attempt of an async query, so that it
# goes on as a regular activity on a worker process; no parameters, one row back.
HEAVY = {"namespace": "default", "slug": "pesado", "execution_mode": "async",
         "sql": "SELECT count(*) AS n FROM range(30000) a, range(30000) b WHERE a.range * b.range = -1"}
SAMPLE = {"namespace": "default", "slug": "amostra", "execution_mode": "sync", "max_rows": 200,
          "sql": "SELECT id, regiao, produto, valor FROM vendas ORDER BY id"}
SLEEPY = {"id": "dorme", "name": "Dorme", "runner": "python", "default_params": {"sleep": 2},
          "code": {"files": {"main.py": "import json, pathlib, time\n"
                                        "p = json.loads(pathlib.Path('params.json').read_text())\n"
                                        "time.sleep(p['sleep'])\n"
                                        "pathlib.Path('output').mkdir(exist_ok=True)\n"
                                        "pathlib.Path('output/slept.txt').write_text(str(p['sleep']))\n"
                                        "pathlib.Path('result.json').write_text(json.dumps({'slept': p['sleep']}))\n"},
                   "entry_point": "main.py"}}


# --- ports and process trees ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _identity(pid: int) -> str | None:
    """The process's start time (tells a pid's reuse apart), or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` with its identity."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            for child in map(int, children):
                ident = _identity(child)
                if ident is not None and child not in found:
                    found[child] = ident
                    todo.append(child)
    return found


def alive(processes: dict[int, str]) -> list[int]:
    return [pid for pid, ident in processes.items() if _identity(pid) == ident]


# --- the tenant, created with the project's functions before any process starts ---------------------------

@dataclass
class Tenant:
    slug: str
    company_id: int
    key_id: str
    secret: str
    webhook_secret: str

    def login_body(self) -> dict:
        return {"company_slug": self.slug, "api_key": self.key_id, "api_secret": self.secret}

    def jobs_headers(self, repository: str | None = None) -> dict:
        h = {"username": "erp", "organization_id": self.slug, "application_id": "erp-app", "client_id": "erp-client",
             "x-api-key": f"{self.key_id}.{self.secret}"}
        return {**h, "repository_id": repository} if repository else h


def create_tenant(settings: Settings, root: Path) -> Tenant:
    """What an operator does with the CLI: company, integration user, key, endpoints, repositories, data."""
    from activities.duck.versions import load_file

    engine = make_engine(settings.resolved_database_url)
    slug = unique_slug("prod")
    hasher = identity.SecretHasher(settings.secret_key.encode())
    try:
        with session_scope(engine) as s:
            company = identity.create_company(s, slug, "Produção Ltda.")
            user = identity.create_user(s, company, "erp", ["DataAPIConsumer", "JobsAPIConsumer"])
            key, secret = identity.create_api_key(s, hasher, company, user)
            for d in [*yaml.safe_load(endpoint_file().read_text())["endpoints"], HEAVY, SAMPLE]:
                upsert_endpoint(s, company, parse_definition(d, settings.default_max_rows, settings.max_rows_cap))
            demo = {"files": {"main.py": (DEMO / "repository" / "main.py").read_text()}, "entry_point": "main.py"}
            upsert_repository(s, company.id, {**REPOSITORY, "code": demo})
            upsert_repository(s, company.id, SLEEPY)
            # The operator reads the webhook secret to configure the receiver (`dataapi webhooks secret`).
            box = webhook_secrets.SecretBox(settings.secret_key.encode())
            webhook_secret = webhook_secrets.current_secret(s, box, company.id)
            tenant = Tenant(slug, company.id, key.key_id, secret, webhook_secret)
    finally:
        engine.dispose()
    load_file(settings.resolved_data_dir, slug, "vendas", write_sales_csv(root / "vendas.csv"))
    return tenant


# --- the processes ---------------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    cmd: list[str]
    env: dict

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def identity(self) -> str:  # the Temporal SDK's default worker identity
        return f"{self.pid}@{HOSTNAME}"

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.exists() else []
        return f"--- {self.name} (pid {self.pid}, exit {self.popen.poll()}) ---\n" + "\n".join(text)


@dataclass
class Topology:
    """Named processes in their own sessions, each with a var dir and a log under ``root``; one environment."""

    root: Path
    env: dict
    procs: list[Proc] = field(default_factory=list)
    strays: dict[int, str] = field(default_factory=dict)  # descendants seen along the way, by pid and identity

    def configure(self, database_url: str, pki: Path, **env: str) -> Settings:
        """The environment every process shares (fresh ports and keys, one data folder, callbacks to the test's
        HTTPS receiver on a fast schedule, 2 s heartbeats), plus ``env``; returns the test's own Settings, whose
        var dir holds the Temporal dev server's file."""
        secret_key = secrets.token_urlsafe(48)
        payload_keyset = json.dumps(new_payload_keyset())  # every process (own var dir) reads the same payloads
        temporal_port, api_port = free_port(), free_port()
        self.env.update({
            "DATAAPI_DATABASE_URL": database_url, "DATAAPI_DATA_DIR": str(self.root / "data"),
            "DATAAPI_ARTIFACT_DIR": str(self.root / "artifacts"),
            "DATAAPI_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "DATAAPI_SECRET_KEY": secret_key, "DATAAPI_JWT_KEYSET": json.dumps(new_keyset()),
            "DATAAPI_PAYLOAD_KEYSET": payload_keyset,
            "DATAAPI_API_HOST": "127.0.0.1", "DATAAPI_API_PORT": str(api_port),
            "DATAAPI_CALLBACK_ALLOW_CIDRS": '["127.0.0.0/8","::1/128"]',
            "DATAAPI_CALLBACK_ALLOW_HOSTS": '["localhost"]',
            "DATAAPI_CALLBACK_CA_BUNDLE": str(pki / "ca.pem"),
            "DATAAPI_CALLBACK_SCHEDULE_SECONDS": "[0,1,1,1,1]",
            "DATAAPI_QUERY_HEARTBEAT_SECONDS": "2", "DATAAPI_JOB_HEARTBEAT_SECONDS": "2",
            "DATAAPI_LOG_LEVEL": "INFO", **env,
        })
        return Settings(var_dir=self.root / "var" / "temporal", database_url=database_url,
                        data_dir=self.root / "data", secret_key=secret_key, payload_keyset=payload_keyset,
                        temporal_address=f"127.0.0.1:{temporal_port}", temporal_ui_port=free_port())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['DATAAPI_API_PORT']}"

    def spawn(self, name: str, cmd: list[str], **env) -> Proc:
        var = self.root / "var" / name
        var.mkdir(parents=True, exist_ok=True)
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        full_env = {**self.env, "DATAAPI_VAR_DIR": str(var), **env}
        with log.open("ab") as out:  # appended: a restarted process keeps one log
            popen = subprocess.Popen(cmd, cwd=var, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        proc = Proc(name, popen, log, cmd, full_env)
        self.procs.append(proc)
        return proc

    def restart(self, proc: Proc) -> Proc:
        """The same command again, same environment and log (the old one must have exited)."""
        assert proc.popen.poll() is not None, f"{proc.name} is still running"
        with proc.log.open("ab") as out:
            out.write(f"--- restarted after exit {proc.popen.returncode} ---\n".encode())
            popen = subprocess.Popen(proc.cmd, cwd=proc.env["DATAAPI_VAR_DIR"], env=proc.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        new = Proc(proc.name, popen, proc.log, proc.cmd, proc.env)
        self.procs.append(new)
        return new

    def start_temporal(self, settings: Settings, bare: bool = False) -> Proc:
        """The dev server on ``settings``' port, file-backed (its var dir's temporal.db), headless; ``bare``
        leaves out the search attributes (``dataapi temporal setup`` adds them, as the migrate step does)."""
        from dataapi.temporal import dev_server_flags

        command = temporal_command(settings)
        flags = dev_server_flags()
        assert command[-len(flags):] == flags
        return self.spawn("temporal", [*(command[:-len(flags)] if bare else command), "--headless"])

    def run(self, *args: str) -> subprocess.CompletedProcess:
        var = self.root / "var" / "cli"
        var.mkdir(parents=True, exist_ok=True)
        return subprocess.run([str(DATAAPI), *args], cwd=var, env={**self.env, "DATAAPI_VAR_DIR": str(var)},
                              capture_output=True, text=True, timeout=60)

    def live(self, name: str) -> Proc:
        """The running process of that name."""
        return next(p for p in self.procs if p.name == name and p.popen.poll() is None)

    def workers(self, queue: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(f"worker-{queue}-")]

    def check_alive(self) -> None:
        dead = [p for p in self.procs if p.popen.poll() is not None and p.popen.returncode != -signal.SIGKILL]
        assert not dead, "a process exited:\n" + "\n".join(p.tail() for p in dead)

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def remember_children(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                self.strays.update(descendants(p.pid))

    def kill(self, proc: Proc) -> None:
        """SIGKILL by pid, as an outside fault injector would."""
        self.strays.update(descendants(proc.pid))  # a job's process dies with its worker (PDEATHSIG)
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)

    def interrupt_all(self, within: float = 15.0) -> dict[str, int | None]:
        """Ctrl-C in the order of a rolling stop: the API, then the workers, then Temporal; their exit statuses
        (None: still running ``within`` seconds after its signal)."""
        self.remember_children()
        live = [p for p in self.procs if p.popen.poll() is None]
        stages = [[p for p in live if p.name == "api"], [p for p in live if p.name.startswith("worker-")],
                  [p for p in live if p.name == "temporal"]]
        codes = {}
        for stage in stages:
            for p in stage:
                p.popen.send_signal(signal.SIGINT)
            deadline = time.monotonic() + within
            for p in stage:
                try:
                    codes[p.name] = p.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    codes[p.name] = None
        return codes

    def strays_gone(self, within: float = 5.0) -> list[int]:
        """Waits for the descendants seen so far to be gone (a grandchild may take a moment); those left."""
        deadline = time.monotonic() + within
        while alive(self.strays) and time.monotonic() < deadline:
            time.sleep(0.1)
        return alive(self.strays)

    def cleanup(self) -> None:
        """Whatever is left (after a failure): stop it by pid."""
        stop_by_pid([p.popen for p in self.procs], self.strays, grace=10)


def stop_by_pid(popens: list[subprocess.Popen], strays: set[int], grace: float) -> None:
    """After a test (or its failure): SIGINT to each process still running, SIGKILL after ``grace`` seconds,
    then SIGKILL to every descendant seen (``strays`` grows with those of the processes stopped here)."""
    for popen in popens:
        if popen.poll() is None:
            strays.update(descendants(popen.pid))
            popen.send_signal(signal.SIGINT)
    for popen in popens:
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    for pid in alive(strays):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def topology(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAAPI_", "AWS_"))}
    topo = Topology(tmp_path, env)
    yield topo
    topo.cleanup()


# --- waiting ---------------------------------------------------------------------------------------------

def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def until(predicate, within: float, what: str, topo: Topology, step: float = 0.2):
    """Awaits ``predicate()`` until it is truthy (its value is returned); fails with the processes' logs."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        topo.check_alive()
        assert time.monotonic() < deadline, f"{what} not reached within {within}s\n{topo.logs()}"
        await asyncio.sleep(step)


async def api_ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


# --- PostgreSQL, the session's server, stopped and started by its cluster tools --------------------------

def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True,
                   capture_output=True, timeout=60)


@contextlib.contextmanager
def postgresql_stopped():
    """PostgreSQL down inside the block, always started again after it (other tests share the server:
    keep the block short)."""
    _pg_ctl("stop")
    try:
        yield
    finally:
        _pg_ctl("start")


def worker_process(settings, queues: str = "queries", extra_env: dict | None = None) -> subprocess.Popen:
    """A real worker process (so that it can be SIGKILLed) with the test's settings."""
    env = {**os.environ, "DATAAPI_VAR_DIR": str(settings.var_dir), "DATAAPI_DATABASE_URL": settings.database_url,
           "DATAAPI_TEMPORAL_ADDRESS": settings.temporal_address,
           "DATAAPI_TASK_QUEUE_QUERIES": settings.task_queue_queries,
           "DATAAPI_TASK_QUEUE_CALLBACKS": settings.task_queue_callbacks,
           "DATAAPI_QUERY_HEARTBEAT_SECONDS": str(settings.query_heartbeat_seconds),
           "DATAAPI_PAYLOAD_KEYSET": settings.payload_keyset, **(extra_env or {})}  # the same payload keys
    return subprocess.Popen([sys.executable, "-m", "cli", "worker", "--queues", queues], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
