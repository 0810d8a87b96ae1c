"""Results in the format and encoding asked for: the sync execute's answer, and
``GET /api/v1/data-api/{namespace}/{slug}/jobs/{job_id}/result`` (any format, ``?offset=&limit=``).

The stored Parquet of a job (``rows_key``) is read batch by batch (``dataapi.data_api.results``) on the thread
pool and streamed; a local store is read in place, an S3 one is first streamed to a temporary file (Parquet is
read from its footer). The whole result as Parquet is the stored file, streamed from the store as it is. The
seed's JSON answers are written from the stored JSON document; a sync execution asked for another format stores
its rows as Parquet too (``QueryInput.store_rows``)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.auth import requires
from api.context import AppContext
from api.errors import ApiError, JSONResponse
from api.schemas.data_api import PREFIX
from dataapi import retention
from dataapi.data_api import results, service
from dataapi.data_api.results import Format, StoredResult
from dataapi.db import session_scope
from dataapi.identity.service import valid_slug
from dataapi.messages import QueryInput, QueryOutput
from dataapi.models import Job
from dataapi.statuses import JobStatus
from dataapi.storage.base import ArtifactNotFound

log = logging.getLogger("dataapi.results")
MIN_COMPRESS_BYTES = 4096  # smaller JSON answers go as they are: coding them costs more than it saves


def requested_format(request: Request) -> Format:
    """The format the caller asks for (``?format=`` or ``Accept``); 406 NOT_ACCEPTABLE for one we lack."""
    return results.negotiate_format(request.headers.get("accept"), request.query_params.get("format"))


def prepare(inp: QueryInput, fmt: Format) -> None:
    """A sync execution asked for a format other than JSON stores its rows as Parquet too."""
    if fmt != Format.JSON:
        inp.store_rows = True


async def sync_answer(request: Request, fmt: Format, document: bytes, outcome: QueryOutput,
                      tail: bytes) -> Response:
    """The sync execute's 200: the stored JSON document with ``tail`` spliced in, or the stored rows in ``fmt``."""
    ctx: AppContext = request.app.state.ctx
    if fmt == Format.JSON:
        body = document[:-1] + tail
        encoding = results.negotiate_encoding(request.headers.get("accept-encoding"), fmt)
        if encoding is None or len(body) < MIN_COMPRESS_BYTES:
            return Response(body, media_type=results.MEDIA_TYPES[fmt], headers={"Vary": "Accept, Accept-Encoding"})
        return Response(b"".join(results.compressed([body], encoding)), media_type=results.MEDIA_TYPES[fmt],
                        headers={"Content-Encoding": encoding, "Vary": "Accept, Accept-Encoding"})
    if outcome.rows_key is None:  # the workflow ran on a worker of an older version: no Parquet
        raise ApiError(406, "NOT_ACCEPTABLE", "This result is available as application/json only")
    return await _stream_rows(request, ctx, outcome.rows_key, fmt, 0, None, "result", {},
                              {"X-Truncated": "true" if outcome.truncated else "false"})


def json_answer(request: Request, body: dict[str, Any]) -> Response:
    """A JSON body (the job object), compressed when the caller accepts it and it is worth it."""
    answer = JSONResponse(body)
    encoding = results.negotiate_encoding(request.headers.get("accept-encoding"), Format.JSON)
    if encoding is None or len(answer.body) < MIN_COMPRESS_BYTES:
        return answer
    return Response(b"".join(results.compressed([bytes(answer.body)], encoding)), media_type="application/json",
                    headers={"Content-Encoding": encoding, "Vary": "Accept-Encoding"})


def job_extras(job: Job, polling_url: str) -> dict[str, Any]:
    """What the job body of an async export endpoint adds to the seed's: every row stored, and where the next
    page is (None when the first ``max_rows`` rows are all of them)."""
    if job.status != JobStatus.COMPLETED or job.total_row_count is None:
        return {}
    page = job.row_count or 0
    more = job.total_row_count > page
    return {"total_row_count": job.total_row_count, "export_truncated": bool(job.rows_truncated),
            "next": f"{polling_url}/result?{urlencode({'offset': page, 'limit': page})}" if more and page else None}


@requires("data_api:get_job")
async def get_result(request: Request) -> Response:
    """A completed job's rows in any format, from ``offset`` (0) for ``limit`` rows (all)."""
    ctx: AppContext = request.app.state.ctx
    fmt = requested_format(request)
    offset, limit = results.parse_page(request.query_params.get("offset"), request.query_params.get("limit"))
    namespace, slug = request.path_params["namespace"], request.path_params["slug"]
    if not valid_slug(namespace) or not valid_slug(slug):
        raise service.EndpointNotFound()
    job_id = request.path_params["job_id"]

    def load() -> Job:
        with session_scope(ctx.engine) as session:
            return service.job_of(session, request.state.claims, namespace, slug, job_id)

    job = await run_in_threadpool(load)
    retention.check_unexpired(job, ctx.settings.result_retention_seconds)  # 410 once it expired
    if job.status == JobStatus.PROCESSING:
        raise ApiError(409, "JOB_NOT_FINISHED", "The job has not finished yet; poll it until it completes")
    if job.status != JobStatus.COMPLETED:
        raise ApiError(409, "JOB_FAILED", f"The job failed: {job.error or 'no result'}")
    base = f"{PREFIX}/{namespace}/{slug}/jobs/{job.id}/result"
    if job.rows_key is None:
        return await _from_document(request, ctx, job, fmt, offset, limit)
    return await _stream_rows(request, ctx, job.rows_key, fmt, offset, limit, job.id, {"base": base})


async def _from_document(request: Request, ctx: AppContext, job: Job, fmt: Format, offset: int,
                         limit: int | None) -> Response:
    """A job stored as the JSON document only (a sync execution): JSON, paged from the document."""
    if fmt != Format.JSON:
        raise ApiError(406, "NOT_ACCEPTABLE", "This result is available as application/json only")
    assert job.result_key is not None
    try:
        document = orjson.loads(await run_in_threadpool(ctx.artifacts.get_bytes, job.result_key))
    except ArtifactNotFound:
        raise ApiError(500, "INTERNAL_ERROR", "The job's result is no longer available") from None
    rows = document["rows"]
    end = len(rows) if limit is None else min(len(rows), offset + limit)
    page = rows[offset:end]
    body = orjson.dumps({"columns": document["columns"], "rows": page, "row_count": len(page), "offset": offset,
                         "total_row_count": len(rows), "next": None if end >= len(rows) else
                         f"{request.url.path}?{urlencode({'offset': end, 'limit': limit or len(rows)})}"})
    return Response(body, media_type=results.MEDIA_TYPES[fmt])


async def _stream_rows(request: Request, ctx: AppContext, key: str, fmt: Format, offset: int, limit: int | None,
                       name: str, links: dict[str, str], extra: dict[str, str] | None = None) -> Response:
    if fmt == Format.PARQUET and offset == 0 and limit is None:
        return await _stored_file(ctx, key, name, extra or {})
    path, temporary = await run_in_threadpool(_local_copy, ctx, key)
    try:
        stored = await run_in_threadpool(StoredResult, path)
    except BaseException:
        _remove(path, temporary)
        raise
    page = stored.page(offset, limit)
    next_url = None
    if "base" in links and page.end < page.total_row_count:
        next_url = f"{links['base']}?{urlencode({'offset': page.end, 'limit': limit or page.end - page.offset})}"
    headers = {"X-Total-Row-Count": str(page.total_row_count), "Vary": "Accept, Accept-Encoding", **(extra or {})}
    if next_url is not None:
        headers["Link"] = f'<{next_url}>; rel="next"'
    if fmt in (Format.CSV, Format.PARQUET, Format.ARROW):
        extension = {Format.CSV: "csv", Format.PARQUET: "parquet", Format.ARROW: "arrows"}[fmt]
        headers["Content-Disposition"] = f'attachment; filename="{name}.{extension}"'
    tail = (b',"offset":%d,"total_row_count":%d,"next":%s}'
            % (page.offset, page.total_row_count, orjson.dumps(next_url))) if "base" in links else b"}"
    chunks = stored.encode(fmt, page, lambda count: tail)
    encoding = results.negotiate_encoding(request.headers.get("accept-encoding"), fmt)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return StreamingResponse(results.compressed(chunks, encoding), media_type=results.MEDIA_TYPES[fmt],
                             headers=headers, background=BackgroundTask(_remove, path, temporary))


async def _stored_file(ctx: AppContext, key: str, name: str, extra: dict[str, str]) -> Response:
    """The whole result as Parquet: the stored file as it is, streamed from the store."""
    try:
        chunks = await run_in_threadpool(ctx.artifacts.open_stream, key)
    except ArtifactNotFound:
        log.error("result artifact %s is missing", key)
        raise ApiError(500, "INTERNAL_ERROR", "The job's result is no longer available") from None
    return StreamingResponse(chunks, media_type=results.MEDIA_TYPES[Format.PARQUET], headers={
        "Content-Disposition": f'attachment; filename="{name}.parquet"', "Vary": "Accept, Accept-Encoding", **extra})


def _local_copy(ctx: AppContext, key: str) -> tuple[Path, bool]:
    """A local path of the artifact: the store's own, or a temporary copy (True) to remove after the answer."""
    try:
        path = ctx.artifacts.local_path(key)
        if path is not None:
            return path, False
        fd, name = tempfile.mkstemp(prefix="dataapi-result-", suffix=".parquet")
        os.close(fd)
        try:
            ctx.artifacts.get_file(key, Path(name))
        except BaseException:
            os.unlink(name)
            raise
        return Path(name), True
    except ArtifactNotFound:
        log.error("result artifact %s is missing", key)
        raise ApiError(500, "INTERNAL_ERROR", "The job's result is no longer available") from None


def _remove(path: Path, temporary: bool) -> None:
    if temporary:
        path.unlink(missing_ok=True)
