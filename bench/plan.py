"""How much work each mode does: the full run (5 to 10 minutes) and --quick (under 2 minutes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    rows: int  # rows of the sales table
    warmup: int  # requests per target and query before measuring
    rounds: int  # alternating rounds (A B C, B C A, ...) per query
    point_requests: int  # concurrency-1 requests per target and round
    medium_requests: int
    wide_requests: int
    throughput_seconds: float  # per target and round, at concurrency 16
    concurrency: int
    async_jobs: int  # submissions of comparison 3
    callback_jobs: int  # jobs of comparison 5
    upload_mb: tuple[int, ...]  # CSV sizes of comparison 6
    scenario_timeout: float  # seconds: a scenario that takes longer is abandoned (the run goes on)


FULL = Plan(name="full", rows=1_000_000, warmup=3, rounds=3, point_requests=100, medium_requests=30,
            wide_requests=10, throughput_seconds=4.0, concurrency=16, async_jobs=1000, callback_jobs=20,
            upload_mb=(5, 50), scenario_timeout=300.0)
QUICK = Plan(name="quick", rows=200_000, warmup=3, rounds=2, point_requests=25, medium_requests=8,
             wide_requests=5, throughput_seconds=1.0, concurrency=16, async_jobs=100, callback_jobs=8,
             upload_mb=(5, 50), scenario_timeout=60.0)
