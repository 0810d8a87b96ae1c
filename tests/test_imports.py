"""The API process loads no DuckDB unless it hosts a query worker: starting a workflow needs its definition and
the activities' names (``activities.query_defs``), never the code that runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _loaded(code: str, tmp_path: Path, **env: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'duckdb')))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DATAAPI_VAR_DIR": str(tmp_path / "var"), **env})
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_data_api_and_its_workflow_load_no_duckdb(tmp_path):
    assert _loaded("import api.data_api, workflows.query, dataapi.data_api.service", tmp_path) == set()


def test_a_thin_api_loads_no_duckdb(tmp_path):
    code = "import api.app\napi.app.create_app()"
    assert _loaded(code, tmp_path, DATAAPI_API_QUERY_WORKER="false") == set()


def test_the_query_worker_loads_duckdb(tmp_path):  # the check above can fail
    assert "duckdb" in _loaded("import worker", tmp_path)
