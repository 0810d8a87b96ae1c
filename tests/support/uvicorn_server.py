"""An ASGI app served on real HTTP (uvicorn on a free loopback port) on the test's own event loop, so that the app
keeps using the session's Temporal client while a separate process (schemathesis' CLI, a browser) calls it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from tests.support.processes import free_port


@contextlib.asynccontextmanager
async def serving(app, lifespan: str = "on") -> AsyncIterator[str]:
    """Yields the base URL (``http://127.0.0.1:<port>``) while the app is served."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
