"""The Jobs API as its tests drive it: a company with the demo repositories and an integration user (``Org``),
and the app wired to the dev server on a task queue of its own (fixtures ``jobs_settings``, ``jobs_app``, and
``org`` with a job worker running)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from cli.demo import HERE as DEMO
from cli.demo import REPOSITORY
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.jobs_api.repositories import upsert_repository
from tests.conftest import app_and_client, unique_slug
from tests.support.polling import wait_until
from worker import build_job_worker

SQL_REPO = {
    "id": "vendas-sql", "name": "Vendas SQL", "runner": "sql", "default_params": {"minimo": 0},
    "code": {"script": "CREATE TABLE resumo AS SELECT regiao, sum(valor) AS total FROM vendas "
                       "WHERE valor >= getvariable('minimo') GROUP BY regiao ORDER BY regiao;",
             "outputs": ["resumo"],
             "result": "SELECT count(*) AS regioes, (SELECT count(*) FROM metas) AS metas FROM resumo"},
}
# Sandboxed, a job sees its own folder only and pids of its own: it marks its start there with a token of this
# run, and sleeps in a `sleep <seconds>.<tag>` that the test finds (or not) among the host's processes.
SLOW_PY = {"files": {"main.py": "import json, pathlib, subprocess, uuid\n"
                                 "p = json.loads(pathlib.Path('params.json').read_text())\n"
                                 "run = uuid.uuid4().hex\n"
                                 "pathlib.Path('started').write_text(run)\n"
                                 "subprocess.run(['sleep', f\"{p.get('sleep', 3)}.{p.get('tag', 0)}\"], check=True)\n"
                                 "pathlib.Path('result.json').write_text(json.dumps({'slept': p.get('sleep', 3), "
                                 "'run': run}))\n"},
           "entry_point": "main.py"}
FAILING_PY = {"files": {"main.py": "import sys\nprint('about to fail')\nprint('bad input', file=sys.stderr)\n"
                                   "sys.exit(3)\n"}, "entry_point": "main.py"}


class Org:
    """A company with repositories and an integration user of the Jobs API."""

    def __init__(self, app, api: httpx.AsyncClient, policies=("JobsAPIConsumer",)):

        self.app, self.api, self.ctx = app, api, app.state.ctx
        self.slug = unique_slug("org")
        self.user = "jobs-user"
        with session_scope(self.ctx.engine) as s:
            company = identity.create_company(s, self.slug)
            self.company_id = company.id
            user = identity.create_user(s, company, self.user, list(policies))
            key, secret = identity.create_api_key(s, self.ctx.hasher, company, user)
            self.user_id, self.api_key_id = user.id, key.id
            demo = {"files": {"main.py": (DEMO / "repository" / "main.py").read_text()}, "entry_point": "main.py"}
            for repo in ({**REPOSITORY, "code": demo}, SQL_REPO,
                         {"id": "lento", "name": "Lento", "runner": "python", "code": SLOW_PY},
                         {"id": "falha", "name": "Falha", "runner": "python", "code": FAILING_PY}):
                upsert_repository(s, company.id, repo)
        self.key = f"{key.key_id}.{secret}"

    def add_user(self, name: str, policies=("JobsAPIConsumer",)) -> dict:
        """Another user of the same company with its own key: the header overrides that make its requests."""
        with session_scope(self.ctx.engine) as s:
            company = identity.require_company(s, self.slug)
            user = identity.create_user(s, company, name, list(policies))
            key, secret = identity.create_api_key(s, self.ctx.hasher, company, user)
        return {"username": name, "x-api-key": f"{key.key_id}.{secret}"}

    def headers(self, repository: str | None = REPOSITORY["id"], application="app-1", client="client-1", **over):
        h = {"username": self.user, "organization_id": self.slug, "application_id": application, "client_id": client,
             "x-api-key": self.key}
        if repository is not None:
            h["repository_id"] = repository
        h.update(over)
        return {k: v for k, v in h.items() if v is not None}

    async def submit(self, files=None, params=None, metadata=None, repository=REPOSITORY["id"], **headers):
        data = {}
        if params is not None:
            data["params"] = json.dumps(params)
        if metadata is not None:
            data["metadata"] = json.dumps(metadata)
        return await self.api.post("/api/v1/job/execute", files=files or {}, data=data,
                                   headers=self.headers(repository, **headers))

    async def finished(self, job_id: str, within: float = 30.0, **headers) -> httpx.Response:
        async def done():
            r = await self.api.get(f"/api/v1/job/{job_id}/result", headers=self.headers(None, **headers))
            return r if r.status_code != 202 else None

        return await wait_until(done, within, step=0.2)


@pytest.fixture
def jobs_settings(stack_settings):
    return stack_settings.model_copy(update={"task_queue_jobs": f"jobs-{uuid.uuid4().hex[:8]}",
                                             "job_heartbeat_seconds": 2.0, "upload_max_bytes": 2 << 20})


@pytest.fixture
async def jobs_app(jobs_settings, temporal_env):
    async with app_and_client(jobs_settings, temporal_env.client) as pair:
        yield pair


@pytest.fixture
async def org(jobs_app, jobs_settings, temporal_env):
    """An ``Org`` on the Jobs API's app, with a job worker running."""
    app, api = jobs_app
    async with build_job_worker(temporal_env.client, jobs_settings):
        yield Org(app, api)


CSV = b"regiao,valor\nSul,10\nNorte,20\nSul,5\n"
