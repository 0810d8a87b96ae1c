"""Blocking work of async activities (DuckDB, the SQL store, files) runs on the activity class's executor, never
on the worker's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


class BlockingActivities:
    """Base of the activity classes that own an executor for their blocking calls."""

    executor: Executor

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
