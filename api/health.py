"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from api.context import context
from api.errors import JSONResponse
from api.schemas.operations import HEALTH as OPENAPI
from dataapi.db import ping

__all__ = ["OPENAPI", "routes"]


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the metadata store and Temporal both answer within two seconds."""
    ctx = context(request)

    async def store() -> None:
        await asyncio.wait_for(run_in_threadpool(ping, ctx.engine), 2)

    async def temporal() -> None:
        client = await ctx.temporal()
        await asyncio.wait_for(client.service_client.check_health(), 2)

    checks = {}
    for name, check in (("store", store), ("temporal", temporal)):
        try:
            await check()
            checks[name] = "ok"
        except Exception as e:  # any failure means not ready; the reason is for the operator
            checks[name] = f"unavailable: {type(e).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
