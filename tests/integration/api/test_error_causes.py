"""A failed query says why: DuckDB's error class and message, server paths scrubbed, the same in the sync
answer, the async job's ``error`` and the workflow's failure (real HTTP, Temporal dev server, worker, DuckDB)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from tests.support.data_api import execute, wait_job
from tests.support.errors import error_body

BINDER = 'Binder Error: Referenced column "valr" not found in FROM clause! Candidate bindings: "valor", "data"'



async def test_a_binder_error_reaches_the_caller_sync_async_and_in_the_workflow(tenant, api, temporal_env):
    for mode in ("sync", "async"):
        tenant.endpoint(slug=f"typo-{mode}", sql="SELECT sum(valr) AS total FROM vendas", execution_mode=mode)
    token = await tenant.token()

    r = await execute(api, token, "default/typo-sync")
    assert r.status_code == 500, r.text
    assert error_body(r) == {"code": "EXECUTION_ERROR", "message": BINDER}  # no SQL excerpt, no "LINE 1:"

    r = await execute(api, token, "default/typo-async")
    assert r.status_code == 202, r.text
    job = await wait_job(api, token, r.json()["polling_url"])
    assert (job["status"], job["error"]) == ("failed", BINDER), job
    with pytest.raises(WorkflowFailureError) as e:
        await temporal_env.client.get_workflow_handle(job["job_id"]).result()
    assert (e.value.cause.message, e.value.cause.type) == (BINDER, "ExecutionError")


@pytest.mark.parametrize("reads", ["/etc/passwd", "{files}/missing.csv", "{files}/../../../x.csv"])
async def test_server_paths_are_scrubbed(tenant, api, reads):
    data_dir = tenant.ctx.settings.resolved_data_dir
    path = reads.format(files=data_dir / tenant.slug / "files")
    tenant.endpoint(slug="reads", sql=f"SELECT * FROM read_csv('{path}')")
    r = await execute(api, await tenant.token(), "default/reads")
    assert r.status_code == 500, r.text
    message = error_body(r)["message"]
    assert message.split(":")[0] in ("IO Error", "Permission Error"), message
    assert "<path>" in message, message
    for leak in (str(data_dir), "/etc", "passwd", tenant.slug + "/files", str(tenant.ctx.settings.var_dir)):
        assert leak not in message, message
