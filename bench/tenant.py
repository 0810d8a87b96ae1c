"""The benchmark's company, created with the project's own functions on the stack's var dir before the API and
the worker start: an integration user (Data API and Jobs API), its key, the endpoints, a line-counting
repository and the sales table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from activities.duck import CompanyDatabases
from activities.runners import validate_code
from bench.queries import ENDPOINTS, NAMESPACE
from dataapi import identity
from dataapi.db import make_engine, session_scope, upgrade
from dataapi.endpoints import parse_definition, upsert_endpoint
from dataapi.jobs import upsert_repository
from dataapi.secrets import secret_key
from dataapi.settings import Settings

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
    duckdb_file: Path  # the company's current database file (the bare handler gets a copy)

    def login_body(self) -> dict:
        return {"company_slug": self.company, "api_key": self.api_key, "api_secret": self.api_secret}

    def jobs_headers(self) -> dict:
        return {"username": USER, "organization_id": self.company, "application_id": APPLICATION_ID,
                "client_id": CLIENT_ID, "repository_id": REPOSITORY_ID,
                "x-api-key": f"{self.api_key}.{self.api_secret}"}


def create_tenant(settings: Settings, sales: Path) -> Tenant:
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(engine) as s:
            company = identity.create_company(s, COMPANY, "Benchmark")
            user = identity.create_user(s, company, USER, POLICIES)
            key, secret = identity.create_api_key(s, identity.SecretHasher(secret_key(settings)), company, user)
            for definition in ENDPOINTS:
                upsert_endpoint(s, company, parse_definition({"namespace": NAMESPACE, **definition},
                                                             settings.default_max_rows, settings.max_rows_cap))
            code = {"files": {"main.py": LINE_COUNT}, "entry_point": "main.py"}
            upsert_repository(s, company.id, {"id": REPOSITORY_ID, "name": "Line count", "runner": "python",
                                              "code": code}, validate_code)
    finally:
        engine.dispose()
    databases = CompanyDatabases(settings.resolved_data_dir)
    databases.load_file(COMPANY, "vendas", sales)
    company_dir = databases.company_dir(COMPANY)
    current = (company_dir / "CURRENT").read_text().strip()
    return Tenant(COMPANY, key.key_id, secret, company_dir / current)
