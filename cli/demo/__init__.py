"""The demo company `acme`: sales data, two endpoints and an integration user, created on first start."""

from __future__ import annotations

import csv
import json
import os
import random
import secrets
from datetime import date, timedelta
from pathlib import Path

import yaml
from sqlmodel import Session

from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.endpoints import upsert_endpoint, validated
from dataapi.db import make_engine, session_scope
from dataapi.identity import passwords
from dataapi.identity import service as identity
from dataapi.jobs_api.repositories import upsert_repository
from dataapi.models import Company, pk
from dataapi.secrets import secret_key
from dataapi.settings import Settings
from dataapi.statuses import UserKind

HERE = Path(__file__).parent
COMPANY = "acme"
USER = "demo-integration"
POLICIES = ["DataAPIConsumer", "JobsAPIConsumer"]
REPOSITORY = {"id": "202009231629398695", "name": "Test Repository", "runner": "python",
              "default_params": {"a": 10, "b": 20, "hyperparam": "Hyperparam_Example"},
              "metadata": {"name": "Test Repository", "more_data": 42}}
APPLICATION_ID, CLIENT_ID = "demo-app", "demo-client"
HUMAN, HUMAN_POLICIES = "demo-admin", ["CompanyAdmin"]  # the console's demo login
REGIONS = ["Norte", "Nordeste", "Centro-Oeste", "Sudeste", "Sul"]
PRODUCTS = ["Notebook", "Monitor", "Teclado", "Mouse", "Cadeira", "Mesa", "Headset", "Webcam"]


def write_sales_csv(path: Path, rows: int = 20_000, seed: int = 42) -> Path:
    """Deterministic sales from 2025-01-01 to 2026-06-30."""
    rng = random.Random(seed)
    start, days = date(2025, 1, 1), (date(2026, 6, 30) - date(2025, 1, 1)).days
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "data", "regiao", "produto", "quantidade", "valor"])
        for i in range(1, rows + 1):
            qty = rng.randint(1, 5)
            w.writerow([i, start + timedelta(days=rng.randint(0, days)), rng.choice(REGIONS),
                        rng.choice(PRODUCTS), qty, f"{qty * rng.uniform(50, 3000):.2f}"])
    return path


def endpoint_file() -> Path:
    return HERE / "endpoints.yaml"


def bootstrap_demo(settings: Settings) -> str:
    """Creates what is missing of the demo (idempotent) and returns the text to print."""
    from activities.duck.databases import CompanyDatabases  # DuckDB only where data is loaded
    from activities.duck.versions import load_file

    # The data first: saving an endpoint checks its SQL against the company's current database.
    databases = CompanyDatabases(settings.resolved_data_dir)
    if "vendas" not in databases.tables(COMPANY):
        sales = write_sales_csv(settings.var_dir / "demo" / "vendas.csv")
        load_file(settings.resolved_data_dir, COMPANY, "vendas", sales)
    engine = make_engine(settings.resolved_database_url)
    creds_path = settings.var_dir / "demo-credentials.json"
    with session_scope(engine) as s:
        company = identity.get_company(s, COMPANY) or identity.create_company(s, COMPANY, "ACME Ltda.")
        user = identity.get_user(s, company, USER) or identity.create_user(s, company, USER, POLICIES)
        identity.grant_policies(s, user, POLICIES)  # a demo from before the Jobs API gains its policy
        if not creds_path.exists():
            key, secret = identity.create_api_key(s, identity.SecretHasher(secret_key(settings)), company, user)
            creds = {"company_slug": COMPANY, "api_key": key.key_id, "api_secret": secret}
            fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(creds, f)
        console_path = settings.var_dir / "demo-console.json"
        if not console_path.exists():
            _console_login(s, company, console_path)
        spec = yaml.safe_load(endpoint_file().read_text())
        for d in spec["endpoints"]:
            definition = parse_definition(d, settings.default_max_rows, settings.max_rows_cap)
            upsert_endpoint(s, company, definition, validated(settings, company, definition)[0])
        code = {"files": {"main.py": (HERE / "repository" / "main.py").read_text()}, "entry_point": "main.py"}
        upsert_repository(s, pk(company), {**REPOSITORY, "code": code})
    engine.dispose()

    creds = json.loads(creds_path.read_text())
    return _banner(settings, creds) + console_banner(settings)


def _write_secret_file(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)


def _console_login(s: Session, company: Company, path: Path) -> None:
    """The demo's human user (CompanyAdmin) with a new random password, kept in ``path`` (0600)."""
    user = identity.get_user(s, company, HUMAN) or identity.create_user(s, company, HUMAN, HUMAN_POLICIES,
                                                                        kind=UserKind.HUMAN)
    password = secrets.token_urlsafe(12)
    passwords.set_password(s, user, password)
    _write_secret_file(path, {"company": COMPANY, "name": HUMAN, "password": password})


def console_banner(settings: Settings) -> str:
    """The console's URL and the demo login, when the demo has one."""
    path = settings.var_dir / "demo-console.json"
    if not path.exists():
        return f"Console: {settings.base_url}/console\n"
    login = json.loads(path.read_text())
    return (f"Console: {settings.base_url}/console   log in as company {login['company']}, user {login['name']}, "
            f"password {login['password']} (var/demo-console.json)\n")


def _banner(settings: Settings, creds: dict) -> str:
    body = json.dumps(creds, indent=2).replace("\n", "\n  ")
    return f"""
Demo company '{COMPANY}' is ready (demo credentials: var/demo-credentials.json).
  {body}

Step 1 of the guide:
  export API_BASE_URL="{settings.base_url}"
  curl -X POST "$API_BASE_URL/api/v1/auth/api-key" -H "Content-Type: application/json" \\
    -d '{json.dumps(creds)}'

Jobs API (repository_id {REPOSITORY["id"]}, application_id {APPLICATION_ID}, client_id {CLIENT_ID}):
  curl -X POST "$API_BASE_URL/api/v1/job/execute" -H "username: {USER}" -H "organization_id: {COMPANY}" \\
    -H "application_id: {APPLICATION_ID}" -H "client_id: {CLIENT_ID}" -H "repository_id: {REPOSITORY["id"]}" \\
    -H "x-api-key: {creds["api_key"]}.{creds["api_secret"]}" -F 'params={{"a": 10, "b": 20}}'
"""
