"""``st run --checks all`` over the whole OpenAPI document, against the app served on real HTTP (uvicorn) with the
world of ``test_fuzz`` (a company with the demo data and endpoints, a Jobs API company, real ids and credentials):
every phase (examples, coverage, fuzzing, stateful) and every check, unsupported methods and ``Allow`` included,
as a caller would run it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import yaml

from cli.demo import endpoint_file
from dataapi.identity.ratelimit import FailureLimiter
from tests.integration.test_fuzz import fuzz_world  # noqa: F401  (the fixture)
from tests.support.data_api import bearer, execute
from tests.support.uvicorn_server import serving

EXAMPLES = 20  # per operation and phase: both runs stay under a minute on two cores
ST = Path(sys.executable).parent / "st"


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


# Refusals of schema-valid data that a JSON Schema cannot foresee, per operation: the SQL of an endpoint must bind
# on the company's database, a repository's code compile, a share context's rules name the endpoint's parameters
# (400 INVALID_DEFINITION, 422 INVALID_SQL), a job's upload be a readable file (400), an Idempotency-Key be new
# for another body (422, as the IETF draft says); an execution's parameter_values are the endpoint's, typed in the
# company's own document (``test_company_openapi``), not in this one (422 INVALID_PARAMETER).
SEMANTIC_REFUSALS = {
    "POST /api/v1/admin/endpoints": (400, 422),
    "PUT /api/v1/admin/endpoints/{namespace}/{slug}": (400, 422),
    "POST /api/v1/admin/repositories": (400,),
    "PUT /api/v1/admin/repositories/{repo_id}": (400,),
    "POST /api/v1/admin/share-contexts": (400,),
    "POST /api/v1/data-api/{namespace}/{slug}/execute": (422,),
    "POST /api/v1/job/execute": (400, 422),  # the upload must be a readable ZIP, CSV, JSON or XLSX file
    "GET /api/v1/data-api/{namespace}/{slug}/jobs": (400,),  # a cursor this API returned; from not after to
}
# Schemathesis' default for valid data, and 406: content negotiation, not a refusal of the request's data (Accept
# is free-form in HTTP, and ?format= wins over it).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "406", "409", "429", "5xx"]


def _config(world: dict) -> str:
    """Credentials per API, and real objects in the paths, so that operations get past 401 and 404."""
    sync, job = world["paths"][1], world["paths"][0]
    blocks: list[tuple[str, str, dict]] = [
        ("include-path-regex", "^/api/v1/job",
         {"headers": world["jobs"], "parameters": {"path.job_id": world["jobs_path"][0]["job_id"]}}),
        ("include-path-regex", "^/api/v1/data-api/\\{namespace\\}/\\{slug\\}/jobs", {
            "headers": world["bearer"],
            "parameters": {"path.namespace": "default", "path.slug": job["slug"], "path.job_id": job["job_id"]}}),
        ("include-path-regex", "^/api/v1/(data-api|admin/endpoints)/\\{namespace\\}/\\{slug\\}(/execute)?$", {
            "headers": world["bearer"], "parameters": {"path.namespace": "default", "path.slug": sync["slug"]}}),
        ("include-path-regex", "^/api/v1/admin/share-contexts/",
         {"headers": world["bearer"], "parameters": {"path.context_id": sync["context_id"]}}),
        ("include-path-regex", "^/api/v1/admin/users/",
         {"headers": world["bearer"], "parameters": {"path.name": sync["name"]}}),
        ("include-path-regex", "^/api/v1/admin/repositories/",
         {"headers": world["bearer"], "parameters": {"path.repo_id": sync["repo_id"]}}),
        ("include-path-regex", "^/api/v1/admin/keys/",
         {"headers": world["bearer"], "parameters": {"path.key_id": sync["key_id"]}}),
        ("include-path-regex", "^/api/v1/(data-api/(endpoints|openapi)|admin/(endpoints|share-contexts|users|"
         "repositories|webhook)[^/]*$|auth/permissions)", {"headers": world["bearer"]}),
    ]
    blocks += [("include-name", name, {"checks": {"positive_data_acceptance": {
        "expected-statuses": ACCEPTED + [str(s) for s in statuses]}}})
        for name, statuses in SEMANTIC_REFUSALS.items()]
    return _blocks(blocks)


def _blocks(blocks: list[tuple[str, str, dict]]) -> str:
    """A schemathesis.toml: the examples per operation, and settings per operation (matched by path or name)."""
    lines = [f"[generation]\nmax-examples = {EXAMPLES}\n",
             f"[checks.positive_data_acceptance]\nexpected-statuses = {_toml(ACCEPTED)}\n"]
    for key, value, settings in blocks:
        lines.append("[[operations]]")
        lines.append(f"{key} = {json.dumps(value)}")
        lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
        lines.append("")
    return "\n".join(lines)


async def test_st_run_checks_all_passes_over_the_whole_document(fuzz_world, tmp_path):  # noqa: F811
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(fuzz_world))
    async with serving(fuzz_world["app"]) as base_url:
        run = await asyncio.create_subprocess_exec(
            str(ST), "--config-file", str(config), "run", f"{base_url}/openapi.json", "--checks", "all",
            "--workers", "1", "--request-timeout", "30", "--no-color",
            *(["--seed", os.environ["DATAAPI_ST_SEED"]] if os.environ.get("DATAAPI_ST_SEED") else []),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        out, _ = await asyncio.wait_for(run.communicate(), timeout=600)
    report = out.decode()
    assert run.returncode == 0, report
    assert "Coverage" in report and "Fuzzing" in report and "Stateful" in report, report


# An endpoint with a parameter of every type and constraint, for the company's document to declare.
EVERY_TYPE = {
    "namespace": "tipos", "slug": "todos",
    "sql": "SELECT $i::BIGINT AS i, $d::DOUBLE AS d, $b::BOOLEAN AS b, $t::VARCHAR AS t, $s::VARCHAR AS s, "
           "$c::VARCHAR AS c, $dia::DATE AS dia, $e::VARCHAR AS e",
    "parameters": [
        {"name": "i", "type": "integer", "required": True}, {"name": "d", "type": "decimal", "default": "1.5"},
        {"name": "b", "type": "boolean"}, {"name": "t", "type": "datetime"},
        {"name": "s", "type": "string", "max_length": 12}, {"name": "c", "type": "string", "pattern": "[A-Z]{2}\\d?"},
        {"name": "dia", "type": "date"}, {"name": "e", "type": "enum", "allowed_values": ["x", "y"], "required": True,
                                          "default": "x"}]}


async def test_st_run_checks_all_passes_over_a_company_document(stack, tenant, api, tmp_path):
    """The company's own document says exactly what its endpoints take: typed parameters accepted (200, 202),
    anything else refused, rows as typed."""
    stack.state.ctx.limiter = FailureLimiter(10**6, 60)  # the fuzzed logins must not lock the real key out
    admin = await tenant.token(("CompanyAdmin",))
    for d in [*yaml.safe_load(endpoint_file().read_text())["endpoints"], EVERY_TYPE]:
        r = await api.put(f"/api/v1/admin/endpoints/{d['namespace']}/{d['slug']}", json=d, headers=bearer(admin))
        assert r.status_code in (200, 201), r.text
    token = await tenant.token()
    job = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"})
    assert job.status_code == 202, job.text
    doc = (await api.get("/api/v1/data-api/openapi.json", headers=bearer(token))).json()
    (tmp_path / "company.json").write_text(json.dumps(doc))
    config = tmp_path / "schemathesis.toml"
    # Two refusals of valid data depend on more than the request: an Idempotency-Key sent before with another body
    # (422 IDEMPOTENCY_KEY_REUSED, as the IETF draft says), and a callback URL's host, checked beyond what a pattern
    # says (no internal address, no special-use name such as .test: 422). The async endpoint's generated calls
    # carry a public callback host.
    config.write_text(_blocks([
        ("include-path-regex", "/jobs/", {"parameters": {"path.job_id": job.json()["job_id"]}}),
        ("include-path-regex", "relatorio-mensal/execute$",
         {"parameters": {"body.callback_url": "https://hooks.acme-callers.com/result"}}),
        ("include-path-regex", "/execute$",
         {"checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}}})]))
    async with serving(stack, lifespan="off") as base_url:
        run = await asyncio.create_subprocess_exec(
            str(ST), "--config-file", str(config), "run", str(tmp_path / "company.json"), "--url", base_url,
            "--checks", "all", "--workers", "1", "--request-timeout", "30", "--no-color",
            "-H", f"Authorization: Bearer {token}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        out, _ = await asyncio.wait_for(run.communicate(), timeout=600)
    report = out.decode()
    assert run.returncode == 0, report
