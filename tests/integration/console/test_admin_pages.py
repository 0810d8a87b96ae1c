"""The CompanyAdmin's pages over the real services: people created with an invitation, a user disabled from the
console (their session ends), repositories registered from an uploaded file, the webhook secret revealed and
rotated, and data loaded from an upload with the CLI's loader."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.jobs_api import repositories
from dataapi.models import RepoJob
from tests.integration.console.conftest import Human, csrf_of


async def test_a_person_created_in_the_console_sets_a_password_and_can_be_disabled(app, browser_for, make_human,
                                                                                  client):
    admin = make_human(["CompanyAdmin"])
    async with browser_for(admin) as c:
        csrf = csrf_of((await c.get("/console/users")).text)
        r = await c.post("/console/users", data={"csrf": csrf, "name": "rui", "kind": "human",
                                                 "policy": ["VisualizationViewer"]})
        assert r.status_code == 201, r.text
        link = re.search(r"http://[^<\s]+/console/invitation/([\w-]+)", r.text).group(1)
        page = await client.get(f"/console/invitation/{link}")
        assert page.status_code == 200
        done = await client.post(f"/console/invitation/{link}", data={
            "csrf": csrf_of(page.text), "password": "rui's password", "password_again": "rui's password"})
        assert done.status_code == 303
        rui = Human(admin.company, "rui", "rui's password")
        async with browser_for(rui) as rc:
            assert (await rc.get("/console/endpoints")).status_code == 200
            r = await c.post("/console/users/action", data={"csrf": csrf, "name": "rui", "action": "disable"})
            assert r.status_code == 303
            assert (await rc.get("/console/endpoints")).status_code == 303  # sent to the login page
        refused = await c.post("/console/users/action", data={"csrf": csrf, "name": admin.name, "action": "disable"})
        assert refused.status_code == 403  # not oneself


async def test_repository_from_an_uploaded_file_or_zip(app, browser_for, make_human):
    admin = make_human(["CompanyAdmin"])
    async with browser_for(admin) as c:
        csrf = csrf_of((await c.get("/console/repositories")).text)
        r = await c.post("/console/repositories", data={"csrf": csrf, "id": "soma", "name": "Soma", "runner": "python",
                                                        "default_params": '{"a": 1}', "metadata": "{}"},
                         files={"code": ("soma.py", b"print(1)\n", "text/x-python")})
        assert r.status_code == 303, r.text
        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w") as z:
            z.writestr("main.py", "import lib\n")
            z.writestr("lib.py", "X = 1\n")
        r = await c.post("/console/repositories", data={"csrf": csrf, "id": "soma", "name": "Soma 2",
                                                        "runner": "python", "entry_point": "main.py"},
                         files={"code": ("code.zip", bundle.getvalue(), "application/zip")})
        assert r.status_code == 303
        bad = await c.post("/console/repositories", data={"csrf": csrf, "name": "X", "runner": "python",
                                                          "default_params": "{oops"},
                           files={"code": ("x.py", b"1", "text/plain")})
        assert bad.status_code == 400 and "not JSON" in bad.text
        page = await c.get("/console/repositories")
        assert "Soma 2" in page.text and "lib.py" in page.text
    with session_scope(app.state.ctx.engine) as s:
        company = identity.require_company(s, admin.company)
        repo = repositories.describe_repository(repositories.get_repository(s, company.id, "soma"), with_code=True)
    assert repo["code"] == {"files": {"main.py": "import lib\n", "lib.py": "X = 1\n"}, "entry_point": "main.py"}


async def test_webhook_secret_reveal_and_rotate(browser_for, make_human):
    admin = make_human(["CompanyAdmin"])
    async with browser_for(admin) as c:
        page = await c.get("/console/settings")
        before = re.search(r'id="webhook-secret">([^<]+)<', page.text).group(1)
        r = await c.post("/console/settings/webhook-secret/rotate", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
        page = await c.get("/console/settings?rotated=1")
        after = re.search(r'id="webhook-secret">([^<]+)<', page.text).group(1)
        assert after != before and "Earlier secrets still signing: 1" in page.text


async def test_data_upload_creates_appends_and_refuses(browser_for, make_human):
    manager = make_human(["VisualizationManager"])
    async with browser_for(manager) as c:
        csrf = csrf_of((await c.get("/console/data")).text)
        r = await c.post("/console/data", data={"csrf": csrf, "table": "metas", "mode": "replace"},
                         files={"file": ("metas.csv", b"regiao,meta\nSul,1\nNorte,2\n", "text/csv")})
        assert r.status_code == 200 and "Loaded 2 rows into metas" in r.text
        r = await c.post("/console/data", data={"csrf": csrf, "table": "metas", "mode": "append"},
                         files={"file": ("mais.csv", b"regiao,meta\nSudeste,3\n", "text/csv")})
        assert "Loaded 1 rows into metas (append)" in r.text
        assert re.search(r"<strong>metas</strong> <span class=\"hint\">3 rows", r.text)
        bad = await c.post("/console/data", data={"csrf": csrf, "table": "Bad-Name", "mode": "replace"},
                           files={"file": ("x.csv", b"a\n1\n", "text/csv")})
        assert bad.status_code == 400
        broken = await c.post("/console/data", data={"csrf": csrf, "table": "metas", "mode": "append"},
                              files={"file": ("x.csv", b"outra,coluna\n1,2\n", "text/csv")})
        assert broken.status_code == 400 and "cannot load" in broken.text


async def test_share_contexts_are_added_and_removed_with_the_admin_apis_rules(app, browser_for, make_human):
    admin = make_human(["CompanyAdmin"])
    with session_scope(app.state.ctx.engine) as s:
        company = identity.require_company(s, admin.company)
        identity.create_user(s, company, "erp", ["DataAPIConsumer"])
    async with browser_for(admin) as c:
        csrf = csrf_of((await c.get("/console/users")).text)
        bad = await c.post("/console/share-contexts", data={"csrf": csrf, "target": "user", "who": "erp",
                                                            "rules": '{"regiao": {"pinned": "Sul"'})
        assert bad.status_code == 400 and "not JSON" in bad.text
        unknown = await c.post("/console/share-contexts", data={"csrf": csrf, "target": "user", "who": "nobody",
                                                                "rules": '{"regiao": {"pinned": "Sul"}}'})
        assert unknown.status_code == 400 and "does not exist" in unknown.text
        r = await c.post("/console/share-contexts", data={"csrf": csrf, "target": "user", "who": "erp",
                                                          "rules": '{"regiao": {"pinned": "Sul"}}'})
        assert r.status_code == 303
        page = await c.get("/console/users")
        row_id = re.search(r'name="id" value="(\d+)"', page.text).group(1)
        assert "&#34;pinned&#34;: &#34;Sul&#34;" in page.text or '"pinned": "Sul"' in page.text
        r = await c.post("/console/share-contexts/delete", data={"csrf": csrf, "id": row_id})
        assert r.status_code == 303
        assert 'name="id" value=' not in (await c.get("/console/users")).text
        await c.post("/console/share-contexts", data={"csrf": csrf, "target": "user", "who": "erp",
                                                      "rules": '{"regiao": {"pinned": "Norte"}}'})
        kept = re.search(r'name="id" value="(\d+)"', (await c.get("/console/users")).text).group(1)
        async with browser_for(make_human(["CompanyAdmin"])) as other:
            theirs = csrf_of((await other.get("/console/users")).text)
            r = await other.post("/console/share-contexts/delete", data={"csrf": theirs, "id": kept})
            assert r.status_code == 404
        assert f'name="id" value="{kept}"' in (await c.get("/console/users")).text


async def test_jobs_api_jobs_for_company_admins_only_in_their_company(app, browser_for, make_human):
    admin = make_human(["CompanyAdmin"])
    viewer = make_human(["VisualizationViewer"], company=admin.company)
    job_id = str(uuid.uuid4())
    ctx = app.state.ctx
    with session_scope(ctx.engine) as s:
        company = identity.require_company(s, admin.company)
        repo, _ = repositories.upsert_repository(s, company.id, {
            "id": "soma", "name": "Soma", "runner": "python",
            "code": {"files": {"main.py": "print(1)"}, "entry_point": "main.py"}})
        s.add(RepoJob(id=job_id, company_id=company.id, repository_id=repo.id, application_id="app",
                      client_id="cli", created_by="erp", status="completed", params='{"a": 1}'))
    ctx.artifacts.put_bytes(f"jobs/{admin.company}/{job_id}/result.json", b'{"total": 3}')
    async with browser_for(admin) as c:
        listing = await c.get("/console/jobs")
        assert "repo-jobs-table" in listing.text and job_id[:13] in listing.text
        page = await c.get(f"/console/jobs/repo/{job_id}")
        assert page.status_code == 200 and "Soma" in page.text
        result = await c.get(f"/console/jobs/repo/{job_id}/result")
        assert result.status_code == 200 and result.json() == {"total": 3}
        assert (await c.get(f"/console/jobs/repo/{job_id}/logs")).status_code == 404  # none stored
    async with browser_for(viewer) as v:
        assert "repo-jobs-table" not in (await v.get("/console/jobs")).text
        assert (await v.get(f"/console/jobs/repo/{job_id}")).status_code == 403
    async with browser_for(make_human(["CompanyAdmin"])) as other:
        assert (await other.get(f"/console/jobs/repo/{job_id}")).status_code == 404
