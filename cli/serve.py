"""The long-running processes: ``dataapi dev`` (the embedded stack), ``dataapi api`` and ``dataapi worker``."""

from __future__ import annotations

import argparse

from cli.common import CliError, Subparsers, add
from dataapi.settings import Settings


def cmd_dev(args: argparse.Namespace, settings: Settings) -> None:
    from cli.dev import run_dev

    run_dev(settings)


def cmd_api(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from api.app import QueryWorkerBuilder, create_app
    from dataapi.logs import configure

    query_worker: QueryWorkerBuilder | None = None
    if settings.api_query_worker:  # DuckDB comes in with the worker's code, only when the API hosts one
        from worker import embedded_query_worker as query_worker
    configure(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings, settle_heap=True, query_worker=query_worker),
                host=args.host or settings.api_host, port=args.port or settings.api_port, log_config=None,
                access_log=False, proxy_headers=settings.trust_forwarded_for,
                timeout_keep_alive=settings.api_keep_alive_seconds)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    import asyncio

    from worker import QUEUES, run_worker

    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    unknown = set(queues) - set(QUEUES)
    if unknown or not queues:
        raise CliError(f"--queues takes a comma-separated subset of {', '.join(QUEUES)}")
    asyncio.run(run_worker(settings, queues))


def register(sub: Subparsers) -> None:
    add(sub, "dev", cmd_dev, "Run the embedded stack: Temporal dev server + UI, worker, API, demo company")
    api = add(sub, "api", cmd_api, "Run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    w = add(sub, "worker", cmd_worker, "Run a Temporal worker")
    w.add_argument("--queues", default="queries,jobs,callbacks", help="task queues to serve (default: all)")
