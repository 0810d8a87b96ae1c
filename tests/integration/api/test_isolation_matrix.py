"""Tenant isolation, route by route: for every route that takes an id, company A (with every permission) calling
with company B's id gets exactly what it gets for an id that does not exist: same status, same body.

The routes are walked from the app, so a new route with a path parameter fails
``test_every_route_with_an_id_is_probed`` until it gets a probe here (or a reason to be exempt).
"""

from __future__ import annotations

import random
import re
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import func, select
from starlette.routing import Mount, Route

from dataapi.data_api.share_contexts import create_share_context
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.jobs_api import repositories
from dataapi.models import ShareContextRow
from tests.support.data_api import Tenant, bearer, execute, wait_job
from tests.support.jobs_api import CSV, FAILING_PY, Org
from worker import build_job_worker

DATA, ADMIN, JOBS = "/api/v1/data-api", "/api/v1/admin", "/api/v1/job"
SHARED_ENDPOINT = {"namespace": "default", "slug": "relatorio-mensal"}  # both companies have it (demo endpoints)

# Routes with a path parameter that names no company object.
EXEMPT = {
    ("GET", DATA + "/{rest:path}"): "answers malformed Data API paths with 400/404, never reads an object",
    ("POST", DATA + "/{rest:path}"): "answers malformed Data API paths with 400/404, never reads an object",
    ("*", "/docs/assets"): "static Swagger UI files",
    ("*", "/console/static"): "the console's static files",
    ("GET", "/console/invitation/{token}"): "a one-time invitation secret, not a company object (console/test_login)",
    ("POST", "/console/invitation/{token}"): "a one-time invitation secret, not a company object (console/test_login)",
    **{(method, "/console" + path): "a console page: tests/integration/console/test_permissions.py probes it"
       for method, path in (("GET", "/endpoints/{namespace}/{slug}"), ("GET", "/endpoints/{namespace}/{slug}/edit"),
                            ("POST", "/endpoints/{namespace}/{slug}/edit"),
                            ("POST", "/endpoints/{namespace}/{slug}/run"), ("GET", "/jobs/data/{job_id}"),
                            ("GET", "/jobs/data/{job_id}/result"), ("POST", "/jobs/data/{job_id}/redeliver"),
                            ("GET", "/jobs/repo/{job_id}"), ("GET", "/jobs/repo/{job_id}/{name}"))},
}


@dataclass
class World:
    """Company B's objects, and company A's credentials (every permission) to reach for them."""

    api: httpx.AsyncClient
    engine: Engine
    a_token: str
    a_jobs: dict  # Jobs API identity headers
    b_token: str
    b_jobs: dict
    ids: dict[str, str] = field(default_factory=dict)


def _like(value: str) -> str:
    """A random id of the same shape: a UUID for a UUID, else each digit or letter replaced by a random one of its
    class (hex stays hex), the key prefix and punctuation kept."""
    try:
        uuid.UUID(value)
        return str(uuid.uuid4())
    except ValueError:
        pass
    prefix = identity.KEY_PREFIX if value.startswith(identity.KEY_PREFIX) else ""
    lower = "abcdef" if set(value) <= set(string.hexdigits.lower()) else string.ascii_lowercase
    classes = {**dict.fromkeys(string.digits, string.digits), **dict.fromkeys(string.ascii_lowercase, lower),
               **dict.fromkeys(string.ascii_uppercase, string.ascii_uppercase)}
    return prefix + "".join(secrets.choice(classes[c]) if c in classes else c for c in value.removeprefix(prefix))


def _no_context(world: World, _value: str) -> str:
    """A share context id above every existing one (ids are small integers, so a random one could exist)."""
    with session_scope(world.engine) as s:
        top = s.exec(select(func.max(ShareContextRow.id))).one() or 0
    return str(top + random.randint(1000, 9999))


@dataclass(frozen=True)
class Probe:
    ids: Callable[[World], dict[str, str]]  # B's object: the path parameters that name it
    fixed: dict[str, str] = field(default_factory=dict)  # the other path parameters
    body: dict | None = None
    fresh: Callable[[World, str], str] = lambda _world, value: _like(value)  # a missing id, same shape


_JOB_PATHS = {"GET": ["", "/result", "/params", "/output", "/logs"], "DELETE": [""]}
PROBES: dict[tuple[str, str], Probe] = {
    ("GET", DATA + "/{namespace}/{slug}"): Probe(lambda w: {"slug": w.ids["endpoint"]}, fixed={"namespace": "default"}),
    ("POST", DATA + "/{namespace}/{slug}/execute"): Probe(
        lambda w: {"slug": w.ids["endpoint"]}, fixed={"namespace": "default"}, body={}),
    ("GET", DATA + "/{namespace}/{slug}/jobs/{job_id}"): Probe(
        lambda w: {"job_id": w.ids["query_job"]}, fixed=SHARED_ENDPOINT),
    ("POST", DATA + "/{namespace}/{slug}/jobs/{job_id}/callback/redeliver"): Probe(
        lambda w: {"job_id": w.ids["query_job"]}, fixed=SHARED_ENDPOINT),
    ("GET", DATA + "/{namespace}/{slug}/jobs"): Probe(lambda w: {"slug": w.ids["endpoint"]},
                                                      fixed={"namespace": "default"}),
    ("DELETE", DATA + "/{namespace}/{slug}/jobs/{job_id}"): Probe(
        lambda w: {"job_id": w.ids["query_job"]}, fixed=SHARED_ENDPOINT),
    ("GET", DATA + "/{namespace}/{slug}/jobs/{job_id}/result"): Probe(
        lambda w: {"job_id": w.ids["query_job"]}, fixed=SHARED_ENDPOINT),
    ("GET", ADMIN + "/endpoints/{namespace}/{slug}"): Probe(
        lambda w: {"slug": w.ids["endpoint"]}, fixed={"namespace": "default"}),
    ("DELETE", ADMIN + "/endpoints/{namespace}/{slug}"): Probe(
        lambda w: {"slug": w.ids["endpoint"]}, fixed={"namespace": "default"}),
    # An idempotent PUT creates the caller's own object: A gets its own new endpoint either way, B's is untouched.
    ("PUT", ADMIN + "/endpoints/{namespace}/{slug}"): Probe(
        lambda w: {"slug": w.ids["endpoint"]}, fixed={"namespace": "default"}, body={"sql": "SELECT 1 AS x"}),
    ("DELETE", ADMIN + "/share-contexts/{context_id}"): Probe(
        lambda w: {"context_id": w.ids["share_context"]}, fresh=_no_context),
    ("POST", ADMIN + "/users/{name}/keys"): Probe(lambda w: {"name": w.ids["user"]}),
    ("DELETE", ADMIN + "/keys/{key_id}"): Probe(lambda w: {"key_id": w.ids["key"]}),
    ("GET", ADMIN + "/repositories/{repo_id}"): Probe(lambda w: {"repo_id": w.ids["repository"]}),
    ("PUT", ADMIN + "/repositories/{repo_id}"): Probe(
        lambda w: {"repo_id": w.ids["repository"]}, body={"name": "A's", "runner": "python", "code": FAILING_PY}),
    **{(method, JOBS + "/{job_id}" + tail): Probe(lambda w: {"job_id": w.ids["repo_job"]})
       for method, tails in _JOB_PATHS.items() for tail in tails},
}
# Reads first, then the mutations; PUTs last, since they create A's own objects under B's names.
_ORDER = {"GET": 0, "POST": 1, "DELETE": 2, "PUT": 3}


def routes_with_ids(routes, prefix: str = ""):
    for r in routes:
        if isinstance(r, Mount) and r.routes:
            yield from routes_with_ids(r.routes, prefix + r.path)
        elif isinstance(r, Route) and r.param_convertors:
            for method in sorted(r.methods - {"HEAD"}):
                yield method, prefix + r.path
        elif isinstance(r, Mount):  # an app mounted under a path (static files)
            yield "*", prefix + r.path


def test_every_route_with_an_id_is_probed(app):
    walked = set(routes_with_ids(app.routes))
    unprobed = sorted(walked - set(PROBES) - set(EXEMPT))
    assert not unprobed, f"routes taking an id with no isolation probe: {unprobed}"
    stale = sorted((set(PROBES) | set(EXEMPT)) - walked)
    assert not stale, f"probes of routes that no longer exist: {stale}"


# --- the world: companies A and B, B's objects -----------------------------------------------------------

@pytest.fixture
async def world(stack, stack_settings, temporal_env):
    settings = stack_settings.model_copy(update={"task_queue_jobs": f"jobs-{uuid.uuid4().hex[:8]}"})
    stack.state.ctx.settings = settings
    transport = httpx.ASGITransport(app=stack, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api, \
            build_job_worker(temporal_env.client, settings):
        a, b = Tenant(stack, api), Tenant(stack, api)
        org_a, org_b = Org(stack, api, policies=("CompanyAdmin",)), Org(stack, api, policies=("CompanyAdmin",))
        w = World(api, stack.state.ctx.engine, await a.token(("CompanyAdmin",)), org_a.headers(None),
                  await b.token(("CompanyAdmin",)), org_b.headers(None))
        b_slug = f"privado-{secrets.token_hex(4)}"
        b.endpoint(slug=b_slug, sql="SELECT 1 AS x")
        user, key, _ = b.user()
        with session_scope(w.engine) as s:
            company = identity.get_company(s, b.slug)
            context = create_share_context(s, company, {"regiao": {"allowed": ["Sul"]}}, user_name=user)
            definition = {"id": repositories.new_repo_id(), "name": "B's", "runner": "python", "code": FAILING_PY}
            repo, _ = repositories.upsert_repository(s, company.id, definition)
            context_id, repo_id = str(context.id), repo.repo_id
        r = await execute(api, w.b_token, "default/relatorio-mensal", {"mes": "2026-03"},
                          callback_url="https://my-system.com/webhook/result")
        assert r.status_code == 202, r.text
        assert (await wait_job(api, w.b_token, r.json()["polling_url"]))["status"] == "completed"
        submitted = await org_b.submit(files={"file": ("vendas.csv", CSV, "text/csv")}, params={"a": 1, "b": 2})
        assert submitted.status_code == 201, submitted.text
        repo_job = submitted.json()["job_id"]
        assert (await org_b.finished(repo_job)).status_code == 200
        w.ids = {"endpoint": b_slug, "query_job": r.json()["job_id"], "share_context": context_id,
                 "user": user, "key": key, "repository": repo_id, "repo_job": repo_job}
        yield w


def _auth(world: World, path: str, owner: bool) -> dict:
    if path.startswith(JOBS):
        return world.b_jobs if owner else world.a_jobs
    return bearer(world.b_token if owner else world.a_token)


async def _call(world: World, method: str, template: str, params: dict, body, owner: bool = False):
    path = template.format(**params)
    return await world.api.request(method, path, json=body, headers=_auth(world, path, owner))


_TIME = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_REQUEST_ID = re.compile(rb',"request_id":"[^"]*"')  # every error body's own (api/request_id.py)


def _seen(r: httpx.Response, ids: dict[str, str]) -> tuple:
    """What a caller sees, with the id it asked for (echoed by an upsert), the request's id and the clock taken
    out."""
    body = _REQUEST_ID.sub(b"", r.content)
    for value in ids.values():
        body = re.sub(rb"(?<![\w-])" + re.escape(value.encode()) + rb"(?![\w-])", b"<id>", body)
    return r.status_code, r.headers.get("content-type"), _TIME.sub(b"<time>", body)


async def test_another_company_s_ids_read_as_missing(world):
    probes = sorted(PROBES.items(), key=lambda kv: (_ORDER[kv[0][0]], kv[0][1]))

    async def owner_view(method, template, probe):
        return await _call(world, method, template, {**probe.fixed, **probe.ids(world)}, probe.body, owner=True)

    before = {(m, t): (await owner_view(m, t, p)).content for (m, t), p in probes if m == "GET"}
    leaks = []
    for (method, template), probe in probes:
        theirs = probe.ids(world)
        missing = {k: probe.fresh(world, v) for k, v in theirs.items()}
        assert missing != theirs
        got = await _call(world, method, template, {**probe.fixed, **theirs}, probe.body)
        expected = await _call(world, method, template, {**probe.fixed, **missing}, probe.body)
        if _seen(got, theirs) != _seen(expected, missing):
            leaks.append(f"{method} {template}: B's id -> {got.status_code} {got.text[:200]!r}; "
                         f"a missing id -> {expected.status_code} {expected.text[:200]!r}")
    assert not leaks, "\n".join(leaks)

    # The probes were not vacuous: B's ids are real and its owner still reaches each of them, unchanged by what A
    # tried (its endpoint runs, its job is there to redeliver, read and delete, its key to revoke...).
    for (method, template), probe in probes:
        r = await owner_view(method, template, probe)
        assert r.status_code not in (401, 403, 404), (method, template, r.status_code, r.text)
        if method == "GET":
            assert r.content == before[method, template], (method, template)
