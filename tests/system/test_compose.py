"""docker-compose.yml and the Dockerfile stay true to the code: every command is a real CLI command, every
DATAAPI_* variable a real setting, every reference a real service. Validated by docker-compose, never run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from dataapi.settings import Settings
from dataapi.storage.factory import make_store
from dataapi.storage.s3 import S3ArtifactStore

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
REQUIRED = {"POSTGRES_PASSWORD": "pg-secret", "MINIO_ROOT_PASSWORD": "minio-secret-123",
            "DATAAPI_SECRET_KEY": "k" * 48, "DATAAPI_JWT_KEYSET": '{"signing_kid": "k1", "keys": {}}',
            "DATAAPI_PAYLOAD_KEYSET": '{"active_kid": "p1", "keys": {}}'}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _interpolate(value) -> str:
    """A compose value with ${VAR:-default} and ${VAR:?message} resolved as the test's environment would."""
    return INTERPOLATION.sub(lambda m: REQUIRED.get(m.group(1), m.group(2) or ""), str(value)).replace("$$", "$")


def _dockerfile_instruction(name: str) -> list[str]:
    """The JSON (exec) form of a Dockerfile instruction such as ENTRYPOINT or CMD."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith(f"{name} "):
            return json.loads(line.removeprefix(f"{name} "))
    raise AssertionError(f"no {name} in the Dockerfile")


def _app_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _invocations() -> list[tuple[str, list[str]]]:
    """(service, args after `dataapi`) for every dataapi command an app service runs."""
    out = []
    for name, service in _app_services(_compose()).items():
        entrypoint = service.get("entrypoint", _dockerfile_instruction("ENTRYPOINT"))
        command = service.get("command", _dockerfile_instruction("CMD"))
        if entrypoint == ["dataapi"]:
            out.append((name, list(command)))
            continue
        assert entrypoint[0] in ("/bin/sh", "sh"), f"{name}: unexpected entrypoint {entrypoint}"
        for step in re.split(r"&&|;|\n", " ".join(command)):
            words = shlex.split(step)
            if words[:1] == ["exec"]:
                words = words[1:]
            if words:
                assert words[0] == "dataapi", f"{name}: runs {words[0]!r}, not the dataapi command"
                out.append((name, words[1:]))
    return out


def _settings_env() -> list[tuple[str, str, str]]:
    """(service, variable, value) of every DATAAPI_* variable the compose file sets."""
    return [(name, key, value) for name, service in _compose()["services"].items()
            for key, value in (service.get("environment") or {}).items() if key.upper().startswith("DATAAPI_")]


# --- (a) docker-compose itself -----------------------------------------------------------------------

def _docker_compose(tmp_path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    empty_env_file = tmp_path / "empty.env"  # a developer's .env must not fill in what the test leaves out
    empty_env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED} | extra_env
    return subprocess.run(["docker-compose", "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config",
                           "-q"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_docker_compose_config_is_valid(tmp_path):
    result = _docker_compose(tmp_path, REQUIRED)
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path):
    result = _docker_compose(tmp_path, {k: v for k, v in REQUIRED.items() if k != "DATAAPI_JWT_KEYSET"})
    assert result.returncode != 0 and "DATAAPI_JWT_KEYSET" in result.stderr


# --- (b) the compose file against the code -----------------------------------------------------------


@pytest.mark.parametrize(("service", "args"), _invocations(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_command_is_a_real_cli_command(service, args):
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{service}: `dataapi {' '.join(args)}` is not a CLI command: {err.getvalue().strip()}")
    assert callable(parsed.func)


def test_the_services_run_every_process_of_the_topology():
    runs = {(service, " ".join(args)) for service, args in _invocations()}
    assert runs == {("migrate", "db upgrade"), ("migrate", "temporal setup"), ("api", "api"),
                    ("worker-queries", "worker --queues queries"), ("worker-jobs", "worker --queues jobs"),
                    ("worker-callbacks", "worker --queues callbacks")}


@pytest.mark.parametrize(("service", "variable", "value"), _settings_env(), ids=lambda v: str(v)[:40])
def test_every_dataapi_variable_is_a_setting_and_parses(service, variable, value):
    field = variable.lower().removeprefix("dataapi_")
    if field not in Settings.model_fields:
        pytest.fail(f"{service}: {variable} is not a field of dataapi.settings.Settings")
    Settings(**{field: _interpolate(value)})  # the value has the field's type


def test_the_image_variables_are_settings_too():
    env = re.findall(r"\b(DATAAPI_\w+)=", (ROOT / "Dockerfile").read_text())
    assert env and all(v.lower().removeprefix("dataapi_") in Settings.model_fields for v in env)


def test_the_artifact_store_is_the_bucket_that_is_created():
    compose = _compose()
    for name, service in _app_services(compose).items():
        store = make_store(_interpolate(service["environment"]["DATAAPI_ARTIFACT_STORE"]))
        assert isinstance(store, S3ArtifactStore), name
        assert f"local/{store.bucket}" in " ".join(compose["services"]["minio-bucket"]["command"])


def _healthcheck(service: dict) -> list | None:
    check = service.get("healthcheck")
    if check is None and "build" in service:  # the image's HEALTHCHECK
        return ["CMD", "python", "-c", "<Dockerfile HEALTHCHECK>"]
    if check is None or check.get("disable") or check.get("test") in (["NONE"], "NONE"):
        return None
    return check["test"]


def test_dependencies_reference_existing_services_and_can_be_met():
    services = _compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert _healthcheck(services[target]), f"{name} waits for {target} to be healthy: no healthcheck"
            elif condition == "service_completed_successfully":  # a one-shot: a restart policy would rerun it
                assert services[target].get("restart") == "no", f"{target} is one-shot: restart must be 'no'"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition!r}"


def test_addresses_name_existing_services():
    """Hosts in healthchecks, commands and environment values are compose services (or the container itself)."""
    services = _compose()["services"]
    host = re.compile(r"(?:^|[/@\s'\"])([a-z][a-z0-9-]*):(\d{2,5})\b")
    for name, service in services.items():
        texts = [str(v) for v in (service.get("environment") or {}).values()]
        texts += [" ".join(map(str, service.get(k) or [])) for k in ("command", "entrypoint")]
        texts.append(" ".join(map(str, (service.get("healthcheck") or {}).get("test") or [])))
        for text in texts:
            for hostname, _port in host.findall(_interpolate(text)):
                assert hostname in services or hostname == "localhost", f"{name}: unknown host {hostname!r}"


def test_every_process_that_runs_queries_sees_the_duckdb_data():
    """worker-queries, and the API while it hosts its query worker, mount one volume at the data folder."""
    services = _compose()["services"]
    data_dir = "/var/lib/dataapi/data"  # DATAAPI_VAR_DIR of the image + /data; DATAAPI_DATA_DIR unset
    assert "DATAAPI_VAR_DIR=/var/lib/dataapi" in (ROOT / "Dockerfile").read_text()
    api_env = services["api"]["environment"]
    readers = ["worker-queries"] + (["api"] if Settings(**{"api_query_worker": _interpolate(
        api_env.get("DATAAPI_API_QUERY_WORKER", "true"))}).api_query_worker else [])
    mounts = set()
    for name in readers:
        assert "DATAAPI_DATA_DIR" not in services[name]["environment"], name
        volume = [v.split(":")[0] for v in services[name].get("volumes", []) if v.split(":")[1] == data_dir]
        assert volume, f"{name} runs queries but does not mount the DuckDB data at {data_dir}"
        mounts.add(volume[0])
    assert len(mounts) == 1 and mounts <= set(_compose()["volumes"])


def test_workers_scale():
    services = _compose()["services"]
    for name in ("worker-queries", "worker-jobs", "worker-callbacks"):
        worker = services[name]
        assert "container_name" not in worker and "ports" not in worker, f"{name} could not run several replicas"
        assert worker["restart"] == "unless-stopped" and _healthcheck(worker)


def test_dockerfile_runs_the_cli_as_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    assert _dockerfile_instruction("ENTRYPOINT") == ["dataapi"] and _dockerfile_instruction("CMD") == ["api"]
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M) and re.search(r"^USER dataapi$", text, re.M)
    assert "EXPOSE 3100" in text and "/healthz" in text and "pip install ." in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git", ".env"} <= set(ignored)


def test_the_image_is_built_from_every_package_the_project_installs():
    """pyproject.toml's packages and modules each have a COPY in the build stage (a new top-level package that
    is not copied installs nowhere, and the console script then fails to import)."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {p.rstrip("*").removesuffix(".") for p in setuptools["packages"]["find"]["include"]}
    sources = {f"{p}.py" for p in setuptools["py-modules"]} | {p for p in packages if "." not in p}
    copied = set(re.findall(r"^COPY (\S+) \./\S*$", (ROOT / "Dockerfile").read_text(), re.M))
    assert sources <= copied, f"not copied into the image: {sorted(sources - copied)}"
