"""``dataapi companies limits``: the real console script shows, sets and resets a company's execute limits in
the store (tests/integration/api/test_rate_limits.py shows the API applying them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dataapi.db import make_engine, session_scope
from dataapi.identity import service as identity
from dataapi.limits import Override, get_override

DATAAPI = Path(sys.executable).parent / "dataapi"


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_")}
    environ.update(DATAAPI_VAR_DIR=str(tmp_path / "var"), **(env or {}))
    return subprocess.run([str(DATAAPI), *args], cwd=tmp_path, env=environ, text=True, capture_output=True,
                          timeout=60)


def test_show_set_and_reset_a_companys_limits(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert run(tmp_path, "companies", "create", "acme").returncode == 0

    shown = run(tmp_path, "companies", "limits", "acme", env={"DATAAPI_RATE_LIMIT_PER_KEY": "60"})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "requests per minute, the company's: no limit (default)",
        "requests per minute, each API key's: 60 (default)",
        "sync executions in flight per API process: 16 (default)",  # twice the 8 query workers
    ]

    set_ = run(tmp_path, "companies", "limits", "acme", "--key-requests-per-minute", "0", "--sync-concurrency", "2")
    assert set_.returncode == 0, set_.stderr
    assert set_.stdout.splitlines()[1:] == ["requests per minute, each API key's: no limit (this company)",
                                            "sync executions in flight per API process: 2 (this company)"]
    more = run(tmp_path, "companies", "limits", "acme", "--requests-per-minute", "500")  # the others stay
    assert more.stdout.splitlines()[0] == "requests per minute, the company's: 500 (this company)"
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'dataapi.db'}")
    with session_scope(engine) as s:
        company = identity.get_company(s, "acme")
        assert get_override(s, company) == Override(500, 0, 2)

    refused = run(tmp_path, "companies", "limits", "acme", "--sync-concurrency", "0")
    assert refused.returncode == 2 and refused.stderr.strip() == "dataapi: error: sync concurrency must be at least 1"
    unknown = run(tmp_path, "companies", "limits", "nobody")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr

    reset = run(tmp_path, "companies", "limits", "acme", "--reset")
    assert reset.returncode == 0 and all(line.endswith("(default)") for line in reset.stdout.splitlines())
    with session_scope(engine) as s:
        assert get_override(s, identity.get_company(s, "acme")) == Override()
    engine.dispose()
