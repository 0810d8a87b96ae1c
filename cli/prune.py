"""``dataapi prune [--dry-run]``: what the prune schedule (cli/prune_schedule.py) does, now, in this process."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict

from cli.common import Subparsers, add, engine
from dataapi.settings import Settings


def cmd_prune(args: argparse.Namespace, settings: Settings) -> None:
    """Prunes now in this process (records and artifacts; the job folders under this machine's var/work), or
    with ``--dry-run`` prints what would go. Prints JSON counts by kind."""
    from dataapi import retention
    from dataapi.storage.factory import store_from_settings

    policy = retention.Policy.of(settings.result_retention_seconds, settings.tombstone_retention_seconds,
                                 settings.prune_batch_size)
    store, work_dir = engine(settings), settings.var_dir / "work"
    folders = retention.stale_work_folders(store, work_dir)
    if args.dry_run:
        counts = retention.plan(store, policy)
    else:
        counts = retention.prune(store, store_from_settings(settings), policy)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    counts.work_folders = len(folders)
    print(json.dumps({"dry_run": args.dry_run, **asdict(counts)}))


def register(sub: Subparsers) -> None:
    p = add(sub, "prune", cmd_prune, "Remove expired results, job rows, callback logs, refresh tokens and job "
                                     "folders now (the prune schedule does it every DATAAPI_PRUNE_INTERVAL_SECONDS)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be removed")
