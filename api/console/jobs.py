"""Jobs: the company's Data API jobs (status, duration, parameters, error, result preview and download, callback
deliveries with every attempt, Redeliver) and, for holders of ``jobs:all_clients``, its Jobs API jobs, each with
a link to its workflow in the Temporal UI.

A Data API job is read and redelivered through the Data API itself (``api.console.apicall``); the lists and the
delivery log are read from the store."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.console import apicall
from api.console.web import PREFIX, ctx_of, page, redirect, render, visitor_of
from dataapi.callbacks.deliveries import attempts_of
from dataapi.errors import NotFound
from dataapi.identity.sessions import Visitor
from dataapi.jobs_api import jobs as repo_jobs
from dataapi.models import CallbackDelivery, Endpoint, Job, RepoJob, Repository, as_utc
from dataapi.settings import Settings
from dataapi.statuses import RepoJobStatus
from dataapi.storage.base import ArtifactNotFound

LIMIT = 100
WEBHOOK_ID_RE = re.compile(r"^msg_[0-9a-f]{8,64}\Z")


def temporal_link(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/") or f"http://localhost:{settings.temporal_ui_port}"
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


def _duration(job: Any) -> str:
    if job.completed_at is None:
        return ""
    seconds = (as_utc(job.completed_at) - as_utc(job.created_at)).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _lists(session: Session, visitor: Visitor) -> dict[str, list[dict[str, Any]]]:
    data = session.exec(select(Job, Endpoint).join(Endpoint, col(Endpoint.id) == Job.endpoint_id)
                        .where(Job.company_id == visitor.company_id)
                        .order_by(col(Job.created_at).desc()).limit(LIMIT)).all()
    out: dict[str, list[dict[str, Any]]] = {"data": [
        {"id": j.id, "endpoint": f"{e.namespace}/{e.slug}", "mode": j.mode, "status": j.status,
         "created_at": j.created_at, "duration": _duration(j), "error": j.error, "rows": j.row_count,
         "callback": bool(j.callback_url)} for j, e in data], "repo": []}
    if visitor.may("jobs:all_clients"):
        repo = session.exec(select(RepoJob, Repository).join(Repository, col(Repository.id) == RepoJob.repository_id)
                            .where(RepoJob.company_id == visitor.company_id, RepoJob.status != RepoJobStatus.DELETED)
                            .order_by(col(RepoJob.created_at).desc()).limit(LIMIT)).all()
        out["repo"] = [{"id": j.id, "repository": r.name, "repo_id": r.repo_id, "status": j.status,
                        "created_at": j.created_at, "duration": _duration(j), "created_by": j.created_by,
                        "client": f"{j.application_id}/{j.client_id}", "error": j.error} for j, r in repo]
    return out


@page("data_api:get_job")
async def list_page(request: Request) -> Response:
    lists = await ctx_of(request).transaction(_lists, visitor_of(request))
    return render(request, "jobs/list.html", data_jobs=lists["data"], repo_jobs=lists["repo"],
                  sees_repo=visitor_of(request).may("jobs:all_clients"))


# --- a Data API job --------------------------------------------------------------------------------------

def _data_job(session: Session, visitor: Visitor, job_id: str) -> dict[str, Any]:
    row = session.exec(select(Job, Endpoint).join(Endpoint, col(Endpoint.id) == Job.endpoint_id)
                       .where(Job.id == job_id, Job.company_id == visitor.company_id)).first() \
        if len(job_id) <= 64 else None
    if row is None:
        raise NotFound("Job not found")
    job, endpoint = row
    deliveries = session.exec(select(CallbackDelivery).where(CallbackDelivery.job_id == job.id)
                              .order_by(col(CallbackDelivery.created_at).desc())).all()
    return {"id": job.id, "namespace": endpoint.namespace, "slug": endpoint.slug, "mode": job.mode,
            "status": job.status, "parameters": json.loads(job.parameters), "callback_url": job.callback_url,
            "created_at": job.created_at, "completed_at": job.completed_at, "duration": _duration(job),
            "error": job.error, "rows": job.row_count, "truncated": job.truncated, "result_key": job.result_key,
            "deliveries": [{"d": d, "attempts": attempts_of(session, d.id)} for d in deliveries]}


async def _show_data_job(request: Request, refused: apicall.ApiAnswer | None = None) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    job = await ctx.transaction(_data_job, visitor, request.path_params["job_id"])
    answer = await apicall.call(request, visitor, "GET", f"/{job['namespace']}/{job['slug']}/jobs/{job['id']}")
    body = answer.json if answer.ok else None
    result = body.get("result") if isinstance(body, dict) else None
    job = await ctx.transaction(_data_job, visitor, request.path_params["job_id"])  # the GET may have reconciled it
    redelivered = request.query_params.get("redelivered", "")
    return render(request, "jobs/data.html", job=job, answer=answer, result=result if isinstance(result, dict)
                  else None, refused=refused, redelivered=redelivered if WEBHOOK_ID_RE.match(redelivered) else "",
                  temporal=temporal_link(ctx.settings, job["id"]), may_redeliver=visitor.may("data_api:execute"))


@page("data_api:get_job")
async def data_job_page(request: Request) -> Response:
    return await _show_data_job(request)


@page("data_api:execute")
async def redeliver(request: Request) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    job = await ctx.transaction(_data_job, visitor, request.path_params["job_id"])
    answer = await apicall.call(request, visitor, "POST",
                                f"/{job['namespace']}/{job['slug']}/jobs/{job['id']}/callback/redeliver")
    if not answer.ok:
        return await _show_data_job(request, answer)
    return redirect(f"/jobs/data/{job['id']}?redelivered={answer.json['webhook_id']}")  # a reload sends nothing


@page("data_api:get_job")
async def data_job_result(request: Request) -> Response:
    ctx = ctx_of(request)
    job = await ctx.transaction(_data_job, visitor_of(request), request.path_params["job_id"])
    if not job["result_key"]:
        raise NotFound("This job has no result")
    try:
        body = await run_in_threadpool(ctx.artifacts.get_bytes, job["result_key"])
    except ArtifactNotFound:
        raise NotFound("The job's result is no longer available") from None
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{job["id"]}.json"'})


# --- a Jobs API job -------------------------------------------------------------------------------------

def _repo_job(session: Session, visitor: Visitor, job_id: str, retention: float) -> dict[str, Any]:
    job = session.get(RepoJob, job_id) if len(job_id) <= 64 else None
    if job is None or job.company_id != visitor.company_id or job.status == RepoJobStatus.DELETED:
        raise NotFound("Job not found")
    repo = session.get(Repository, job.repository_id)
    assert repo is not None
    return {"id": job.id, "described": repo_jobs.describe_job(job, repo, retention), "status": job.status,
            "params": json.loads(job.params), "error": job.error, "created_at": job.created_at,
            "completed_at": job.completed_at, "duration": _duration(job), "client": job.client_id,
            "application": job.application_id, "repository": repo.name, "repo_id": repo.repo_id}


@page("jobs:all_clients")
async def repo_job_page(request: Request) -> Response:
    ctx = ctx_of(request)
    job = await ctx.transaction(_repo_job, visitor_of(request), request.path_params["job_id"],
                                ctx.settings.result_retention_seconds)
    return render(request, "jobs/repo.html", job=job, temporal=temporal_link(ctx.settings, job["id"]))


@page("jobs:all_clients")
async def repo_job_file(request: Request) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    job = await ctx.transaction(_repo_job, visitor, request.path_params["job_id"],
                                ctx.settings.result_retention_seconds)
    name = request.path_params["name"]
    files = {"result": ("result.json", "application/json"), "output": ("output.zip", "application/zip"),
             "logs": ("logs.zip", "application/zip")}
    if name not in files:
        raise NotFound("No such file")
    filename, media_type = files[name]
    key = f"{repo_jobs.artifact_prefix(visitor.company_slug, job['id'])}/{filename}"
    try:
        body = await run_in_threadpool(ctx.artifacts.get_bytes, key)
    except ArtifactNotFound:
        raise NotFound("This job has no such file (yet, or any more)") from None
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{job["id"]}-{filename}"'})


routes = [
    Route(PREFIX + "/jobs", list_page, methods=["GET"]),
    Route(PREFIX + "/jobs/data/{job_id}", data_job_page, methods=["GET"]),
    Route(PREFIX + "/jobs/data/{job_id}/result", data_job_result, methods=["GET"]),
    Route(PREFIX + "/jobs/data/{job_id}/redeliver", redeliver, methods=["POST"]),
    Route(PREFIX + "/jobs/repo/{job_id}", repo_job_page, methods=["GET"]),
    Route(PREFIX + "/jobs/repo/{job_id}/{name}", repo_job_file, methods=["GET"]),
]
