"""What the command groups share: the one-line error and the store and hasher built from the settings."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from dataapi.db import make_engine
from dataapi.identity import service as identity
from dataapi.settings import Settings

Command = Callable[[argparse.Namespace, Settings], None]
Subparsers = Any  # argparse's private _SubParsersAction


class CliError(Exception):
    """A bad argument or a refused operation: printed as one line, exit status 2."""


def add(parent: Subparsers, name: str, func: Command, help_: str) -> argparse.ArgumentParser:
    """A command: its parser, with ``func`` to run when it is chosen."""
    sp: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
    sp.set_defaults(func=func)
    return sp


def group(sub: Subparsers, name: str, help_: str) -> Subparsers:
    """A command group (``dataapi users ...``): the subparsers its commands are added to."""
    return sub.add_parser(name, help=help_).add_subparsers(dest=f"{name.replace('-', '_')}_command", required=True)


def engine(settings: Settings) -> Engine:
    return make_engine(settings.resolved_database_url)


def hasher(settings: Settings) -> identity.SecretHasher:
    from dataapi.secrets import secret_key

    return identity.SecretHasher(secret_key(settings))
