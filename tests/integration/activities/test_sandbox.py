"""The sandbox of repository jobs against real bwrap, with the platform's secrets laid out as the embedded stack
lays them out (var/secret-key, var/jwt-keys.json, the metadata store, company data, other jobs' folders).

A hostile repository tries every way out that issue #20 (1) lists and writes down what it got; the job must
complete normally having got nothing. The same job run with the sandbox turned off gets the secrets, which
shows the job really tries."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
import zipfile
from pathlib import Path

import duckdb
import pytest

from activities import runners, supervision
from activities import sandbox as sb
from activities.jobs import zip_dir
from activities.runners import RunLimits, run_job
from activities.sandbox import SQL_RUNNER_INSIDE, Sandbox
from dataapi.db import make_engine
from dataapi.secrets import jwt_keyset, secret_key
from dataapi.settings import Settings
from tests.support.job_runs import host_processes, log, python, wait_gone
from worker import build_job_worker

LIMITS = RunLimits(time_limit_seconds=60)

HOSTILE = r'''
import ctypes, glob, json, os, resource, socket, subprocess, sys
from pathlib import Path

targets = json.loads(Path("params.json").read_text())
got = {}


def attempt(name, fn):
    try:
        got[name] = "GOT " + repr(fn())[:200]
    except Exception as e:  # every refusal is an exception of some kind
        got[name] = f"refused: {type(e).__name__}: {e}"[:300]


def read(path):
    return Path(path).read_bytes()[:64]


for name in ("secret_key", "jwt_keys", "metadata_db", "other_company_duckdb", "other_company_file",
             "other_job_result", "other_job_folder"):
    attempt(f"read {name}", lambda p=targets[name]: read(p) if Path(p).is_file() or not Path(p).exists()
            else os.listdir(p))
attempt("list var", lambda: os.listdir(targets["var_dir"]))
attempt("write other company files/", lambda: Path(targets["other_company_files_dir"], "planted.csv").write_text("x"))
attempt("write project code", lambda: open(targets["project_file"], "a").write("# owned\n"))
attempt("write site-packages", lambda: Path(targets["site_packages"], "owned.pth").write_text("import os\n"))
attempt("write own repo", lambda: Path("repo/main.py").write_text("# owned\n"))
attempt("read worker environ", lambda: read(f"/proc/{targets['worker_pid']}/environ"))


def canary_in_any_process():
    seen = []
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            if targets["canary"].encode() in Path(environ).read_bytes():
                seen.append(environ)
        except OSError:
            pass
    if seen:
        return seen
    raise LookupError(f"no process with the worker's environment among {len(glob.glob('/proc/[0-9]*'))} visible")


attempt("find the worker's environment in /proc", canary_in_any_process)
for port in targets["ports"]:
    attempt(f"connect 127.0.0.1:{port}",
            lambda port=port: socket.create_connection(("127.0.0.1", port), timeout=3).close())
attempt("connect 1.1.1.1:443", lambda: socket.create_connection(("1.1.1.1", 443), timeout=3).close())
attempt("resolve a name", lambda: socket.getaddrinfo("example.com", 443))
attempt("become uid 0", lambda: (os.setuid(0), os.getuid()))
attempt("raise the memory limit", lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)))
libc = ctypes.CDLL(None, use_errno=True)


def new_user_namespace():
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "unshared"


attempt("create a user namespace", new_user_namespace)
# Left running on purpose: a new session, and a grandchild whose parent has exited (reparented to pid 1).
subprocess.Popen(["setsid", "sleep", targets["sleep"]], start_new_session=True)
subprocess.Popen(["sh", "-c", f"sleep {targets['sleep']} &"], start_new_session=True).wait()
Path("result.json").write_text(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "got": got}))
'''


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """A var/ as the embedded stack writes it, two companies' data, another job's folder; and this process
    (standing in for the worker) with secrets in its environment."""
    settings = Settings(var_dir=tmp_path / "var")
    var = settings.var_dir
    secret_key(settings)
    jwt_keyset(settings)
    make_engine(settings.resolved_database_url).dispose()
    (var / "data" / "acme").mkdir(parents=True)
    with duckdb.connect(str(var / "data" / "acme" / "db.duckdb")) as con:
        con.execute("CREATE TABLE vendas AS SELECT 42 AS valor")
    (var / "data" / "acme" / "files").mkdir(parents=True)
    (var / "data" / "acme" / "files" / "contrato.csv").write_text("segredo\n")
    other = var / "work" / str(uuid.uuid4())
    other.mkdir(parents=True)
    (other / "result.json").write_text('{"acme": "result"}')
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("DATAAPI_SECRET_KEY", canary)
    monkeypatch.setenv("DATAAPI_DATABASE_URL", f"postgresql://u:{canary}@127.0.0.1:5432/x")
    job = var / "work" / str(uuid.uuid4())  # where the job activity puts a job's folder
    for sub in ("inputs", "output", "logs"):
        (job / sub).mkdir(parents=True)
    site_packages = Path(duckdb.__file__).parent.parent
    targets = {
        "var_dir": str(var), "secret_key": str(var / "secret-key"), "jwt_keys": str(var / "jwt-keys.json"),
        "metadata_db": str(var / "dataapi.db"), "other_company_duckdb": str(var / "data" / "acme" / "db.duckdb"),
        "other_company_file": str(var / "data" / "acme" / "files" / "contrato.csv"),
        "other_company_files_dir": str(var / "data" / "acme" / "files"),
        "other_job_result": str(other / "result.json"), "other_job_folder": str(other),
        "project_file": runners.__file__, "site_packages": str(site_packages),
        "worker_pid": os.getpid(), "canary": canary, "ports": _listening_ports(),
        "sleep": f"100.{time.time_ns() % 10**9}",
    }
    (job / "params.json").write_text(json.dumps(targets))
    return job, targets


def _listening_ports() -> list[int]:
    """The local services a job could try: PostgreSQL always, and whatever of the API and Temporal runs."""
    ports = [5432]
    for port in (3100, 7233, 8233):
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                ports.append(port)
    return ports


def test_a_hostile_repository_gets_nothing_and_still_completes(platform):
    job, targets = platform
    before = {p: Path(p).read_bytes() for p in (targets["project_file"],)}
    assert 5432 in targets["ports"]  # the host's PostgreSQL answers here, outside the sandbox
    try:
        result = run_job("python", python(HOSTILE), job, LIMITS)
        assert (result.ok, result.error) == (True, None), log(job, "stderr")
        seen = json.loads((job / "result.json").read_text())
        assert (seen["uid"], seen["gid"]) == (65534, 65534)
        got = seen["got"]
        assert len(got) == 19 + len(targets["ports"])
        for name, outcome in got.items():
            assert outcome.startswith("refused: "), f"{name}: {outcome}"
        assert "No such file or directory" in got["read secret_key"]  # not there at all, not merely unreadable
        assert "Read-only file system" in got["write own repo"]
        # Two processes visible: the sandbox's pid 1 (bwrap's reaper) and the job itself.
        assert "no process with the worker's environment among 2 visible" in got[
            "find the worker's environment in /proc"]
        assert wait_gone(targets["sleep"])  # nothing it started outlives it, setsid or orphaned
    finally:
        for pid in host_processes(targets["sleep"]):
            os.kill(pid, 9)
    assert not (Path(targets["other_company_files_dir"]) / "planted.csv").exists()
    assert not (Path(targets["site_packages"]) / "owned.pth").exists()
    assert {p: Path(p).read_bytes() for p in before} == before
    # What it wrote is the worker's to read and remove.
    assert (job / "result.json").stat().st_uid == os.getuid()
    shutil.rmtree(job)


def test_the_same_job_unsandboxed_reads_the_secrets_with_a_warning_at_every_run(platform, caplog):
    """DATAAPI_UNSANDBOXED_JOBS: the development escape hatch. It also shows the hostile job really tries."""
    job, targets = platform
    # Decoys for what it would write: unsandboxed, it can write the real project and site-packages.
    decoys = job.parent / "decoys"
    decoys.mkdir()
    (decoys / "runners.py").write_text("")
    targets.update(project_file=str(decoys / "runners.py"), site_packages=str(decoys))
    (job / "params.json").write_text(json.dumps(targets))
    caplog.set_level(logging.WARNING, logger="dataapi.activities.launchers")
    try:
        for _ in range(2):
            result = run_job("python", python(HOSTILE), job, LIMITS, sandbox=Sandbox(unsandboxed=True))
            assert result.ok, log(job, "stderr")
    finally:
        for pid in host_processes(targets["sleep"]):
            os.kill(pid, 9)
        (Path(targets["other_company_files_dir"]) / "planted.csv").unlink(missing_ok=True)
    got = json.loads((job / "result.json").read_text())["got"]
    assert got["read secret_key"] == "GOT " + repr(Path(targets["secret_key"]).read_bytes()[:64])
    assert got["read jwt_keys"].startswith("GOT ")
    assert got["connect 127.0.0.1:5432"] == "GOT None"
    assert (decoys / "owned.pth").exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "WITHOUT a sandbox" in r.message]
    assert len(warnings) == 2


def test_links_left_for_the_worker_to_follow_lead_nowhere(platform):
    """What the worker packs after the run (output.zip, logs.zip, as the job activity does) cannot be turned into
    a read or a write of a host path by links, swapped folders or FIFOs the job leaves behind."""
    job, targets = platform
    decoy = job.parent / "decoy.txt"  # a host file the worker could be tricked into overwriting
    decoy.write_text("intact")
    code = python(f"""
        import json, os
        tried = {{}}
        def attempt(name, fn):
            try:
                fn()
                tried[name] = "done"
            except OSError as e:
                tried[name] = f"refused: {{e.strerror}}"
        attempt("rename output", lambda: os.rename("output", "output.old"))
        attempt("remove logs", lambda: os.rmdir("logs"))
        attempt("write logs", lambda: open("logs/platform.log", "a").write("forged"))
        attempt("link output.zip", lambda: os.symlink({str(decoy)!r}, "output.zip"))
        attempt("link logs.zip", lambda: os.symlink({str(decoy)!r}, "logs.zip"))
        attempt("link in output", lambda: os.symlink({targets["secret_key"]!r}, "output/secret"))
        attempt("link var in output", lambda: os.symlink({targets["var_dir"]!r}, "output/var"))
        attempt("fifo in output", lambda: os.mkfifo("output/fifo"))
        open("output/real.txt", "w").write("ok")
        json.dump(tried, open("result.json", "w"))
        """)
    result = run_job("python", code, job, LIMITS)
    assert result.ok, log(job, "stderr")
    tried = json.loads((job / "result.json").read_text())
    busy = "refused: Device or resource busy"  # mount points
    assert tried == {"rename output": busy, "remove logs": busy,
                     "write logs": "refused: Read-only file system", "link output.zip": "done",
                     "link logs.zip": "done", "link in output": "done", "link var in output": "done",
                     "fifo in output": "done"}
    zip_dir(job / "output", job / "output.zip")
    zip_dir(job / "logs", job / "logs.zip")
    assert decoy.read_text() == "intact"
    assert not (job / "output.zip").is_symlink()
    with zipfile.ZipFile(job / "output.zip") as z:
        assert z.namelist() == ["real.txt"]
    with zipfile.ZipFile(job / "logs.zip") as z:
        assert sorted(z.namelist()) == ["stderr.log", "stdout.log"]


def test_fail_closed_when_bwrap_is_missing(tmp_path, caplog):
    job = _folder(tmp_path)
    result = run_job("python", python("open('ran', 'w')"), job, LIMITS,
                     sandbox=Sandbox(bwrap=str(tmp_path / "no-such-bwrap")))
    assert (result.ok, result.exit_code) == (False, None)
    assert result.error == "sandbox unavailable: cannot start no-such-bwrap (No such file or directory)"
    assert not (job / "ran").exists()
    assert "repository job not run" in caplog.text


def test_fail_closed_when_bwrap_cannot_set_the_sandbox_up(tmp_path):
    """bwrap refused by the kernel exits with a "bwrap: ..." line before running anything; here a bwrap that
    cannot create a user namespace is stood in for by one made to fail the same way."""
    job = _folder(tmp_path)
    refusing = tmp_path / "bwrap"
    refusing.write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n")
    refusing.chmod(0o755)
    result = run_job("python", python("open('ran', 'w')"), job, LIMITS, sandbox=Sandbox(bwrap=str(refusing)))
    assert (result.ok, result.exit_code) == (False, None)
    assert result.error == ("sandbox unavailable: bwrap could not start the sandbox "
                            "(bwrap: No permissions to create a new namespace)")
    assert not (job / "ran").exists()


def test_the_sql_runner_runs_in_the_sandbox(tmp_path):
    """Seen from the host while it runs: another pid and network namespace, and the time limit ends it."""
    job = _folder(tmp_path)
    code = {"script": "", "outputs": [], "result": "SELECT count(*) AS n FROM range(100000000000)"}
    results = []
    runner = threading.Thread(target=lambda: results.append(
        run_job("sql", code, job, RunLimits(time_limit_seconds=4))))
    runner.start()
    pids: list[int] = []
    until = time.monotonic() + 4
    while not pids and time.monotonic() < until:  # the interpreter running it, not bwrap (which names it too)
        pids = [pid for pid in host_processes(SQL_RUNNER_INSIDE)
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1] == b"-I"]
        time.sleep(0.05)
    assert pids, "the sql runner never showed up"
    status = Path(f"/proc/{pids[0]}/status").read_text()
    namespaces = {ns: os.readlink(f"/proc/{pids[0]}/ns/{ns}") for ns in ("pid", "net", "user", "mnt")}
    runner.join()
    assert {ns: os.readlink(f"/proc/self/ns/{ns}") != link for ns, link in namespaces.items()} == dict.fromkeys(
        namespaces, True)
    assert len(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()) == 3  # 2 levels
    assert results[0].error == "time limit exceeded"
    assert wait_gone(SQL_RUNNER_INSIDE)


def test_time_limit_kills_a_forked_tree(tmp_path):
    job = _folder(tmp_path)
    seconds = f"100.{time.time_ns() % 10**9}"
    code = python(f"""
        import os, subprocess, time
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp("sleep", ["sleep", "{seconds}"])
                os._exit(0)
        time.sleep(100)
        """)
    result = run_job("python", code, job, RunLimits(time_limit_seconds=1.5))
    assert result.error == "time limit exceeded"
    assert wait_gone(seconds)


def test_limits_inside_the_sandbox(tmp_path):
    """Open files, /tmp and the rlimits as the job sees them (it cannot raise a hard limit back)."""
    job = _folder(tmp_path)
    code = python("""
        import json, os, resource
        files = []
        try:
            while True:
                files.append(open("params.json"))
        except OSError as e:
            opened = (len(files), e.strerror)
        for f in files:
            f.close()
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(64):
                    f.write(bytes(1 << 20))
            tmp = "wrote 64 MB"
        except OSError as e:
            tmp = e.strerror
        limits = {name: resource.getrlimit(getattr(resource, name))
                  for name in ("RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_CORE", "RLIMIT_AS")}
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (10_000, 10_000))
            raised = "raised"
        except ValueError as e:
            raised = str(e)
        json.dump({"opened": opened, "tmp": tmp, "limits": limits, "raised": raised}, open("result.json", "w"))
        """)
    limits = RunLimits(time_limit_seconds=10, max_open_files=64, max_processes=40, tmp_bytes=4 << 20,
                       memory_bytes=1 << 30)
    result = run_job("python", code, job, limits)
    assert result.ok, log(job, "stderr")
    seen = json.loads((job / "result.json").read_text())
    assert seen["opened"][1] == "Too many open files" and seen["opened"][0] < 64
    assert seen["tmp"] == "No space left on device"
    cpu = 10 * (os.cpu_count() or 1) + 1
    assert seen["limits"] == {"RLIMIT_NPROC": [40, 40], "RLIMIT_NOFILE": [64, 64], "RLIMIT_CPU": [cpu, cpu],
                              "RLIMIT_CORE": [0, 0], "RLIMIT_AS": [1 << 30, 1 << 30]}
    assert seen["raised"] == "not allowed to raise maximum limit"


def _pids_cgroup_available() -> bool:
    probe = sb.ProcessCgroup.create(1, f"dataapi-probe-{os.getpid()}")
    if probe is not None:
        probe.close()
    return probe is not None


@pytest.mark.skipif(os.geteuid() == 0 and not _pids_cgroup_available(),
                    reason="as root the process count is capped by a pids cgroup, and none can be made here")
def test_process_count_limit(tmp_path):
    job = _folder(tmp_path)
    code = python("""
        import json, subprocess
        children = []
        try:
            while len(children) < 200:
                children.append(subprocess.Popen(["sleep", "30"]))
            outcome = "forked 200"
        except OSError as e:
            outcome = f"refused after {len(children)}: {e.strerror}"
        for c in children:
            c.kill()
        json.dump({"outcome": outcome}, open("result.json", "w"))
        """)
    before = set(_job_cgroups())
    result = run_job("python", code, job, RunLimits(time_limit_seconds=20, max_processes=20))
    assert result.ok, log(job, "stderr")
    outcome = json.loads((job / "result.json").read_text())["outcome"]
    assert outcome.startswith("refused after"), outcome
    assert int(outcome.split()[2].rstrip(":")) < 20
    assert set(_job_cgroups()) == before  # the job's cgroup is gone with it


def _job_cgroups() -> list[str]:
    return [str(p) for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
            if root.is_dir() for p in root.rglob("dataapi-job-*")]


def test_output_folder_cap_kills_the_job(tmp_path):
    job = _folder(tmp_path)
    code = python("""
        import time
        for i in range(200):  # 1 MB every 50 ms: 10 s to write them all
            open(f"output/part{i}.bin", "wb").write(bytes(1 << 20))
            time.sleep(0.05)
        open("result.json", "w").write("{}")
        """)
    result = run_job("python", code, job, RunLimits(time_limit_seconds=20, max_output_bytes=5 << 20))
    assert (result.ok, result.error) == (False, f"output limit exceeded: the job wrote more than {5 << 20} bytes")
    assert not (job / "result.json").exists()  # killed before the end
    assert result.duration_ms < 8000
    assert sum(p.stat().st_size for p in (job / "output").iterdir()) < 100 << 20


def test_output_folder_cap_counts_files(tmp_path, monkeypatch):
    monkeypatch.setattr(supervision, "OUTPUT_MAX_ENTRIES", 50)
    job = _folder(tmp_path)
    code = python("""
        for i in range(80):
            open(f"output/f{i}", "w").close()
        open("result.json", "w").write("{}")
        """)
    result = run_job("python", code, job, LIMITS)
    assert (result.ok, result.error) == (False, "output limit exceeded: the job created more than 50 files")


def test_the_demo_repository_runs_in_the_sandbox(tmp_path):
    from cli.demo import HERE as DEMO

    job = _folder(tmp_path, params={"a": 10, "b": 20})
    (job / "inputs" / "vendas.csv").write_text("regiao,valor\nSul,10\n")
    code = {"files": {"main.py": (DEMO / "repository" / "main.py").read_text()}, "entry_point": "main.py"}
    result = run_job("python", code, job, LIMITS)
    assert result.ok, log(job, "stderr")
    assert json.loads((job / "result.json").read_text())["output"]["value"] == 600
    assert (job / "output" / "summary.csv").read_text().splitlines()[1] == "10,20,,1,1"


async def test_the_job_worker_loads_no_key_nor_secret(tmp_path, temporal_env, monkeypatch):
    """Building the jobs worker (what `dataapi worker --queues jobs` runs) creates and reads no JWT keyset and
    no secret key: with nothing configured, the embedded stack would generate them under var/ on first use."""
    monkeypatch.delenv("DATAAPI_SECRET_KEY", raising=False)
    monkeypatch.delenv("DATAAPI_JWT_KEYSET", raising=False)
    settings = Settings(var_dir=tmp_path / "var", unsandboxed_jobs=True, job_max_processes=33)
    async with build_job_worker(temporal_env.client, settings):
        pass
    var = settings.var_dir
    assert not (var / "secret-key").exists()
    assert not (var / "jwt-keys.json").exists()
    # Control: the callbacks worker does need the secret key, and the check above would see it.
    from worker import build_callback_worker

    build_callback_worker(temporal_env.client, settings)
    assert (var / "secret-key").exists()


def _folder(tmp_path: Path, params: dict | None = None) -> Path:
    job = tmp_path / "job"
    for sub in ("inputs", "output", "logs"):
        (job / sub).mkdir(parents=True)
    (job / "params.json").write_text(json.dumps(params or {}))
    return job


def test_binds_under_tmp_stay_visible(tmp_path):
    """The private /tmp is mounted before any bind, so an interpreter or virtualenv under /tmp (a checkout
    there) is still seen inside rather than hidden by the tmpfs."""
    limits = RunLimits()
    args = sb.bwrap_command("bwrap", tmp_path, ["true"], limits, 3, {}, [("/tmp/x/venv/lib", "/tmp/x/venv/lib")])
    tmpfs = args.index("/tmp", args.index("--tmpfs"))
    binds = [i for i, a in enumerate(args) if a in ("--ro-bind", "--bind", "--symlink")]
    assert tmpfs < min(binds)
