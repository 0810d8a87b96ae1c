"""The benchmark's company, created with the ``dataapi`` command on the stack's var dir before the API and the
worker start: an integration user (Data API and Jobs API), its key, the endpoints, a line-counting repository
and the sales table. Only the command is used, so the bench follows the product's modules wherever they move."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.queries import ENDPOINTS, NAMESPACE

DATAAPI = str(Path(sys.executable).parent / "dataapi")
COMPANY = "bench"
USER = "bench-integration"
POLICIES = ["DataAPIConsumer", "JobsAPIConsumer"]
REPOSITORY_ID = "bench-line-count"
APPLICATION_ID, CLIENT_ID = "bench-app", "bench-client"
LINE_COUNT = """\
import json
from pathlib import Path

lines = size = 0
for path in sorted(Path("inputs").rglob("*.csv")):
    size += path.stat().st_size
    with path.open("rb") as f:
        lines += sum(1 for _ in f)
Path("result.json").write_text(json.dumps({"lines": lines, "bytes": size}))
"""


@dataclass(frozen=True)
class Tenant:
    company: str
    api_key: str
    api_secret: str

    def login_body(self) -> dict:
        return {"company_slug": self.company, "api_key": self.api_key, "api_secret": self.api_secret}

    def jobs_headers(self) -> dict:
        return {"username": USER, "organization_id": self.company, "application_id": APPLICATION_ID,
                "client_id": CLIENT_ID, "repository_id": REPOSITORY_ID,
                "x-api-key": f"{self.api_key}.{self.api_secret}"}


def dataapi(env: dict, *args: str) -> str:
    """Runs ``dataapi ARGS`` with ``env`` (its ``DATAAPI_*`` settings); returns its output."""
    done = subprocess.run([DATAAPI, *args], env=env, capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dataapi {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def create_tenant(env: dict, work: Path, sales: Path) -> Tenant:
    dataapi(env, "db", "upgrade")
    dataapi(env, "companies", "create", COMPANY, "--name", "Benchmark")
    dataapi(env, "users", "create", "--company", COMPANY, "--name", USER,
            *(arg for p in POLICIES for arg in ("--policy", p)))
    key = json.loads(dataapi(env, "keys", "create", "--company", COMPANY, "--user", USER, "--json"))
    endpoints = work / "endpoints.json"
    endpoints.write_text(json.dumps({"company": COMPANY,
                                     "endpoints": [{"namespace": NAMESPACE, **e} for e in ENDPOINTS]}))
    dataapi(env, "data", "load", "--company", COMPANY, "--table", "vendas", str(sales))
    dataapi(env, "endpoints", "apply", str(endpoints))  # after the load: apply checks the SQL against the data
    repo = work / "line-count"
    repo.mkdir()
    (repo / "main.py").write_text(LINE_COUNT)
    dataapi(env, "repositories", "create", "--company", COMPANY, "--name", "Line count", "--runner", "python",
            "--path", str(repo), "--id", REPOSITORY_ID)
    return Tenant(COMPANY, key["api_key"], key["api_secret"])
