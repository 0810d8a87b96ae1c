"""``GET /api/v1/data-api/{namespace}/{slug}/jobs`` (the caller's jobs of an endpoint) and ``DELETE .../jobs/{job_id}``
(cancel a running job, or delete a finished one and its result). The rules are ``dataapi.data_api.job_list``."""

from __future__ import annotations

import contextlib
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from temporalio.service import RPCError

from api.auth import requires
from api.context import context
from api.errors import JSONResponse
from api.schemas.data_api import PREFIX
from dataapi.data_api import job_list, jobs, service

log = logging.getLogger("dataapi.data_api")


def _path(request: Request) -> tuple[str, str]:
    """The endpoint's namespace and slug, as ``api.data_api`` reads them (404 when malformed)."""
    return service.endpoint_path(request.path_params["namespace"], request.path_params["slug"])


@requires("data_api:get_job")
async def list_jobs(request: Request) -> Response:
    namespace, slug = _path(request)
    f = job_list.parse_filter(dict(request.query_params))
    prefix = f"{PREFIX}/{namespace}/{slug}/jobs"
    page = await context(request).transaction(job_list.list_jobs, request.state.claims, namespace, slug, f, prefix)
    return JSONResponse(page)


@requires("data_api:execute")
async def delete_job(request: Request) -> Response:
    """A running job: its workflow is cancelled (the query activity interrupts DuckDB) and the job answers as
    failed, ``Cancelled by caller`` (200, the job object). A finished job: its result is removed and the job
    answers 404 from then on (204)."""
    ctx = context(request)
    namespace, slug = _path(request)
    removal = await ctx.transaction(job_list.cancel_or_delete, request.state.claims, namespace, slug,
                                    request.path_params["job_id"])
    if removal.cancelled:
        client = await ctx.temporal()
        with contextlib.suppress(RPCError):  # closed meanwhile: its outcome was recorded first anyway
            await client.get_workflow_handle(removal.job.id).cancel()
        return JSONResponse(jobs.job_body(removal.job, None))
    for key in removal.artifacts:
        try:
            await run_in_threadpool(ctx.artifacts.delete_prefix, key)
        except OSError:  # the job is gone for the caller; the operator's log says what is left behind
            log.exception("deleting result %s of job %s", key, removal.job.id)
    return Response(status_code=204)
