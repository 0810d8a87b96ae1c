"""Failure rate limiting for the auth endpoints: a sliding window of failures per key (client address,
API key id). In-process: each API process counts on its own, which bounds guessing per process."""

from __future__ import annotations

import math
import time
from collections import deque
from threading import Lock


class FailureLimiter:
    def __init__(self, max_failures: int, window_seconds: float, clock=time.monotonic):
        self.max_failures, self.window = max_failures, window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = Lock()

    def retry_after(self, *keys: str) -> int | None:
        """Seconds to wait when any key has used up its failures in the window, else None."""
        now = self._clock()
        worst = 0.0
        with self._lock:
            for key in keys:
                q = self._prune(key, now)
                if q is not None and len(q) >= self.max_failures:
                    # concurrent failures can overshoot the limit: wait until enough of them have expired
                    worst = max(worst, q[len(q) - max(self.max_failures, 1)] + self.window - now)
        return max(1, math.ceil(worst)) if worst > 0 else None

    def fail(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 100_000:  # bound memory under a spray of distinct keys
                for key in list(self._failures):
                    self._prune(key, now)

    def _prune(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q
