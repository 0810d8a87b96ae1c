"""The long-running processes' heap: what startup made is set aside from the garbage collector's full passes.

A process of ours holds a large, long-lived heap after startup (the Temporal SDK and its protobuf modules,
SQLAlchemy, DuckDB's bindings, Starlette): over a million objects that a full (generation 2) collection walks
every time, a pause that lands now and then in the middle of a request and shows in the slowest sync calls.
``settle`` collects once and moves every object still alive into the permanent generation
(``gc.freeze``), so later full passes walk only what was made since; garbage made later is collected as
before. Called once the process has started what it keeps (docs/performance.md).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("dataapi.heap")


def settle() -> int:
    """Collects, then freezes what is alive; returns the number of objects frozen so far."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap settled: %d objects set aside from full collections (%.0f ms)", frozen,
             (time.perf_counter() - started) * 1000)
    return frozen
