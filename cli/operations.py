"""The operator's commands: migrate the store, register Temporal's search attributes, rotate the token signing
keys, the payload encryption keys and a company's webhook signing secret."""

from __future__ import annotations

import argparse
import functools
import json
import sys

from cli.common import CliError, Subparsers, add, engine, group
from dataapi.db import session_scope, upgrade
from dataapi.identity import service as identity
from dataapi.models import pk
from dataapi.settings import Settings


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> None:
    upgrade(settings.resolved_database_url)
    print("database is at the latest revision")


def cmd_temporal_setup(args: argparse.Namespace, settings: Settings) -> None:
    import asyncio

    from cli.prune_schedule import ensure_prune_schedule
    from dataapi import temporal

    async def run() -> tuple[list[str], bool]:
        client = await temporal.connect(settings)
        return await temporal.setup(client, settings.temporal_namespace), await ensure_prune_schedule(client, settings)

    added, created = asyncio.run(run())
    print(f"search attributes added: {', '.join(added)}" if added else "search attributes already registered")
    print(f"prune schedule {settings.prune_schedule_id} {'created' if created else 'updated'}")


def cmd_jwt_rotate(args: argparse.Namespace, settings: Settings) -> None:
    from dataapi.secrets import rotate_keyset

    if settings.jwt_keyset:
        raise CliError("DATAAPI_JWT_KEYSET is set: rotate keys in your secret store, not in var/")
    print(f"new signing key {rotate_keyset(settings)}; restart the API to use it")


def cmd_payload_keys_rotate(args: argparse.Namespace, settings: Settings) -> None:
    from dataapi import codec

    activate = not args.no_activate
    try:
        if settings.payload_keyset:  # the secret store holds it: print the rotated keyset to put there
            keyset, kid = codec.rotate_keyset(codec.payload_keyset(settings), activate=activate)
            print(json.dumps(keyset))
            print(f"new payload key {kid}{' (active)' if activate else ''}: set DATAAPI_PAYLOAD_KEYSET to the JSON "
                  "above on every process (docs/operations.md)", file=sys.stderr)
            return
        kid = codec.rotate_embedded_keyset(settings, activate=activate)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"new payload key {kid}{' (active)' if activate else ''} in {codec.keyset_path(settings)}; restart the "
          "API and the workers to use it (older keys keep decoding)")


def cmd_payload_keys_generate(args: argparse.Namespace, settings: Settings) -> None:
    from dataapi.codec import new_keyset

    print(json.dumps(new_keyset()))


def cmd_webhooks(args: argparse.Namespace, settings: Settings, rotate: bool) -> None:
    from dataapi.callbacks import secrets as webhook_secrets
    from dataapi.secrets import secret_key

    box = webhook_secrets.SecretBox(secret_key(settings))
    grace = settings.webhook_secret_grace_seconds
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        describe = webhook_secrets.rotate if rotate else webhook_secrets.describe
        print(json.dumps(describe(s, box, pk(company), grace)))


def register(sub: Subparsers) -> None:
    db = group(sub, "db", "Metadata store")
    add(db, "upgrade", cmd_db_upgrade, "Apply the migrations")

    tmp = group(sub, "temporal", "Temporal cluster")
    add(tmp, "setup", cmd_temporal_setup, "Register the search attributes the Temporal UI filters jobs by, and "
                                          "create (or update) the prune schedule")

    jwt = group(sub, "jwt", "Token signing keys")
    add(jwt, "rotate", cmd_jwt_rotate, "Add a new signing key to the embedded keyset (older keys still verify)")

    pk = group(sub, "payload-keys", "Keys of the Temporal payload encryption")
    r = add(pk, "rotate", cmd_payload_keys_rotate,
            "Add a new payload key and make it the active one (older keys still decode); with "
            "DATAAPI_PAYLOAD_KEYSET set, print the rotated keyset instead of writing var/payload-keys.json")
    r.add_argument("--no-activate", action="store_true",
                   help="add the key without making it active (the first step of a rolling rotation)")
    add(pk, "generate", cmd_payload_keys_generate, "Print a new keyset for DATAAPI_PAYLOAD_KEYSET")


def register_webhooks(sub: Subparsers) -> None:
    webhooks = group(sub, "webhooks", "Webhook signing secrets")
    for name, rotate, help_ in (("secret", False, "Print the company's webhook signing secret"),
                                ("rotate", True, "Rotate the signing secret (the old one signs during the grace)")):
        wh = add(webhooks, name, functools.partial(cmd_webhooks, rotate=rotate), help_)
        wh.add_argument("--company", required=True)
