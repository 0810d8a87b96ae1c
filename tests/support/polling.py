"""Waiting on a condition in a test: an async predicate polled until it holds, failing the test past a deadline."""

from __future__ import annotations

import asyncio
import time


async def wait_until(predicate, within: float, step: float = 0.1):
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)
