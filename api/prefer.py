"""RFC 7240 ``Prefer: respond-async, wait=N`` on a sync endpoint's execute.

The execution then runs as an async job from the start (its row written up front, the async time limit,
``QueryInput.continued``); the request waits for it up to ``wait`` seconds (at most the sync limit; 0 when
absent): finished by then, the answer is the sync one (200, or the sync errors); else 202 with the seed's async
body and ``polling_url`` while the query keeps running. ``Preference-Applied`` says which: ``respond-async``
on the 202, ``wait=N`` on an answer given within the wait. Without the header nothing changes; on an async
endpoint the header changes nothing either (its answer is always 202)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from temporalio.client import Client, WorkflowFailureError

from api.context import AppContext
from api.errors import JSONResponse
from api.results import sync_answer
from dataapi.data_api import service
from dataapi.data_api.results import Format
from dataapi.messages import QueryInput, QueryOutput
from dataapi.statuses import JobStatus, QueryStatus

HEADER = "Prefer"


def respond_async_wait(values: Iterable[str], limit: float) -> float | None:
    """The seconds a caller preferring ``respond-async`` waits (``wait``, capped at ``limit``; 0 without it),
    or None when it does not ask for an async answer. Preferences not understood are ignored (RFC 7240)."""
    asked, wait = False, 0.0
    for value in values:
        for item in value.split(","):
            name, _, raw = item.split(";", 1)[0].strip().partition("=")
            name, raw = name.strip().lower(), raw.strip().strip('"')
            if name == "respond-async":
                asked = True
            elif name == "wait":
                try:
                    wait = float(raw)
                except ValueError:
                    continue
                if not 0 <= wait < float("inf"):
                    wait = 0.0
    return min(wait, limit) if asked else None


async def continued(request: Request, client: Client, inp: QueryInput, wait: float, polling_url: str,
                    fmt: Format) -> Response:
    """Waits up to ``wait`` seconds for the job's workflow: its sync answer (in ``fmt``), or 202 while it runs on."""
    ctx: AppContext = request.app.state.ctx
    try:
        handle = client.get_workflow_handle(inp.job_id, result_type=QueryOutput)
        out = await asyncio.wait_for(handle.result(), timeout=wait)
    except TimeoutError:  # the wait is over, the workflow is not: it runs up to the async limit
        return JSONResponse({"job_id": inp.job_id, "status": JobStatus.PROCESSING, "polling_url": polling_url},
                            202, headers={"Preference-Applied": "respond-async"})
    except WorkflowFailureError as e:
        out = QueryOutput(status=QueryStatus.FAILED, error=getattr(e.cause, "message", None),
                          error_type=getattr(e.cause, "type", None))
    service.check_outcome(out, inp.job_id, ctx.settings.sync_timeout_seconds)
    assert out.result_key is not None
    document = await run_in_threadpool(ctx.artifacts.get_bytes, out.result_key)
    tail = b',"max_rows":%d,"executed_at":%s}' % (inp.max_rows, orjson.dumps(out.executed_at))
    answer = await sync_answer(request, fmt, document, out, tail)
    answer.headers["Preference-Applied"] = f"wait={wait:g}"
    return answer
