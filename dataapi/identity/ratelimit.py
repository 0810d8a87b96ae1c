"""Failure rate limiting for the credential checks (login, refresh, the Jobs API's ``x-api-key``).

The credential is always checked first: a correct secret (or a valid refresh token) is never refused, whoever
failed before it. Only failing attempts are counted and, once over budget, answered 429 instead of 401. Budgets,
in a sliding window:

- per (API key id, client address): ``max_failures``. Someone who knows a key id (its public part) and fails
  from their own address slows only themselves; the owner, from any address, is never refused.
- per client address, across key ids (spraying): ``max_failures`` x ``ADDRESS_FACTOR``.
- per client address for refresh tokens: ``max_failures``.

In-process: each API process counts on its own, which bounds failing attempts per process."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from threading import Lock

ADDRESS_FACTOR = 10  # an address may fail this many times the per-pair budget, across key ids


def pair_key(address: str, key_id: str) -> str:
    return f"pair:{address}|{key_id}"


def address_key(address: str) -> str:
    return f"ip:{address}"


def refresh_key(address: str) -> str:
    return f"refresh:{address}"


class FailureLimiter:
    def __init__(self, max_failures: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window = max_failures, window_seconds
        self.max_per_address = max_failures * ADDRESS_FACTOR
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = Lock()

    def budget(self, key: str) -> int:
        return self.max_per_address if key.startswith("ip:") else self.max_failures

    # --- what the credential checks call, after the credential was checked ---------------------------------

    def login_failed(self, address: str, key_id: str) -> int | None:
        """A wrong secret for ``key_id`` from ``address``: the seconds to wait when the pair or the address has
        used up its budget (answer 429, nothing counted), else None (the failure is counted; answer 401).
        The same for a key id that does not exist: the answer never tells the two apart."""
        return self._fail_or_wait(pair_key(address, key_id), address_key(address))

    def login_succeeded(self, address: str, key_id: str) -> None:
        """The owner's secret from ``address``: that pair starts afresh. The address's count stays, so that
        holding one valid key does not buy more guesses at other keys."""
        with self._lock:
            self._failures.pop(pair_key(address, key_id), None)

    def refresh_failed(self, address: str) -> int | None:
        return self._fail_or_wait(refresh_key(address))

    # --- the sliding window -------------------------------------------------------------------------------

    def retry_after(self, *keys: str) -> int | None:
        """Seconds to wait when any key has used up its budget in the window, else None."""
        with self._lock:
            return self._wait(keys, self._clock())

    def fail(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            self._record(keys, now)

    def _fail_or_wait(self, *keys: str) -> int | None:
        """Checks and counts in one step, so that concurrent failures cannot overshoot a budget."""
        now = self._clock()
        with self._lock:
            wait = self._wait(keys, now)
            if wait is None:
                self._record(keys, now)
            return wait

    def _wait(self, keys: Iterable[str], now: float) -> int | None:
        worst = 0.0
        for key in keys:
            q = self._prune(key, now)
            budget = self.budget(key)
            if q is not None and len(q) >= budget:
                # failures recorded with fail() can overshoot the budget: wait until enough of them have expired
                worst = max(worst, q[len(q) - max(budget, 1)] + self.window - now)
        return max(1, math.ceil(worst)) if worst > 0 else None

    def _record(self, keys: Iterable[str], now: float) -> None:
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
