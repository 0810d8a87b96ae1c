"""The API process loads no DuckDB unless it hosts a query worker: starting a workflow needs its definition and
the activities' names (``activities.query_defs``), never the code that runs them. The app itself never imports
the worker: the process that hosts one passes its builder in (``dataapi api``, ``cli/serve.py``). The layers
behind this are checked on every import by ``lint-imports`` (pyproject.toml, ``make test``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_app_loads_no_duckdb_even_when_the_api_hosts_a_query_worker(tmp_path):
    code = "import api.app\napi.app.create_app()"
    assert _loaded(code, tmp_path, DATAAPI_API_QUERY_WORKER="true") == set()


def test_the_command_loads_no_duckdb_until_a_command_needs_it(tmp_path):
    assert _loaded("import cli.main\ncli.main.build_parser()", tmp_path) == set()


def test_the_query_worker_loads_duckdb(tmp_path):  # the check above can fail
    assert "duckdb" in _loaded("import worker", tmp_path)
