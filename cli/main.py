"""The ``dataapi`` command: run the stack, migrate the store, manage companies, users, keys and data."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cli import data_api, identity, jobs_api, operations, prune, serve
from cli.common import CliError
from dataapi.errors import DomainError
from dataapi.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dataapi", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (serve.register, operations.register, identity.register, data_api.register,
                     jobs_api.register, operations.register_webhooks, prune.register):
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args, get_settings())
    except (CliError, DomainError, ValueError) as e:
        print(f"dataapi: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """The ``dataapi`` console script and ``python -m cli``: ``main``, then, in a process that made a Temporal
    client, an exit that skips the interpreter's teardown once output and logs are flushed. The SDK's Rust
    threads outlive the event loop and can call into Python while it finalizes, which aborts the process
    ("Fatal Python error: PyGILState_Release", temporalio/sdk-python#300; seen here on ``temporal setup``,
    the migrate step of a deployment), turning a command that succeeded into a failed one."""
    code = main()
    temporal = sys.modules.get("dataapi.temporal")
    if temporal is not None and temporal.connected():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
