"""The ``dataapi`` command: run the stack, migrate the store, manage companies, users, keys and data."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dataapi.db import make_engine, session_scope, upgrade
from dataapi.errors import DomainError, NotFound
from dataapi.identity import service as identity
from dataapi.identity.policies import POLICIES
from dataapi.settings import Settings, get_settings


class CliError(Exception):
    """A bad argument or a refused operation: printed as one line, exit status 2."""


def _engine(settings: Settings):
    return make_engine(settings.resolved_database_url)


def _hasher(settings: Settings) -> identity.SecretHasher:
    from dataapi.secrets import secret_key

    return identity.SecretHasher(secret_key(settings))


# --- commands ----------------------------------------------------------------------------------------

def cmd_dev(args, settings: Settings) -> None:
    from dataapi.dev import run_dev

    run_dev(settings)


def cmd_api(args, settings: Settings) -> None:
    import uvicorn

    from api.app import create_app
    from dataapi.logs import configure

    configure(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings, settle_heap=True), host=args.host or settings.api_host,
                port=args.port or settings.api_port, log_config=None, access_log=False,
                proxy_headers=settings.trust_forwarded_for, timeout_keep_alive=settings.api_keep_alive_seconds)


def cmd_worker(args, settings: Settings) -> None:
    import asyncio

    from worker import QUEUES, run_worker

    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    unknown = set(queues) - set(QUEUES)
    if unknown or not queues:
        raise CliError(f"--queues takes a comma-separated subset of {', '.join(QUEUES)}")
    asyncio.run(run_worker(settings, queues))


def cmd_temporal_setup(args, settings: Settings) -> None:
    import asyncio

    from dataapi import temporal

    async def run() -> list[str]:
        return await temporal.setup(await temporal.connect(settings), settings.temporal_namespace)

    added = asyncio.run(run())
    print(f"search attributes added: {', '.join(added)}" if added else "search attributes already registered")


def cmd_db_upgrade(args, settings: Settings) -> None:
    upgrade(settings.resolved_database_url)
    print("database is at the latest revision")


def cmd_jwt_rotate(args, settings: Settings) -> None:
    from dataapi.secrets import rotate_keyset

    if settings.jwt_keyset:
        raise CliError("DATAAPI_JWT_KEYSET is set: rotate keys in your secret store, not in var/")
    print(f"new signing key {rotate_keyset(settings)}; restart the API to use it")


def cmd_payload_keys_rotate(args, settings: Settings) -> None:
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


def cmd_payload_keys_generate(args, settings: Settings) -> None:
    from dataapi.codec import new_keyset

    print(json.dumps(new_keyset()))


def cmd_companies_create(args, settings: Settings) -> None:
    with session_scope(_engine(settings)) as s:
        company = identity.create_company(s, args.slug, args.name)
        print(f"created company {company.slug}")


def cmd_users_create(args, settings: Settings) -> None:
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        user = identity.create_user(s, company, args.name, args.policy or [], kind=args.kind)
        policies = ", ".join(args.policy or []) or "no policy"
        print(f"created {user.kind} user {user.name} in {company.slug} with {policies}")


def cmd_users_disable(args, settings: Settings, disabled: bool = True) -> None:
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        try:
            user = identity.require_user(s, company, args.name)
        except NotFound:
            raise CliError(f"user {args.name!r} does not exist in {company.slug!r}") from None
        identity.set_user_disabled(s, user, disabled)
        print(f"user {user.name} {'disabled' if disabled else 'enabled'}")


def cmd_keys_create(args, settings: Settings) -> None:
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        try:
            out = identity.issue_api_key(s, _hasher(settings), company, args.user)
        except NotFound:
            raise CliError(f"user {args.user!r} does not exist in {company.slug!r}") from None
    if args.json:
        print(json.dumps(out))
    else:
        print(f"company_slug: {out['company_slug']}\napi_key:      {out['api_key']}\n"
              f"api_secret:   {out['api_secret']}\nThe secret is shown only now; store it safely.")


def cmd_keys_revoke(args, settings: Settings) -> None:
    with session_scope(_engine(settings)) as s:
        try:
            identity.revoke_api_key(s, args.key_id)
        except NotFound:
            raise CliError(f"API key {args.key_id!r} does not exist") from None
    print(f"revoked {args.key_id}")


def _definitions(path: str, company: str | None) -> tuple[str, list]:
    """An `endpoints apply` file: one endpoint, a list, or {company, endpoints: [...]} (YAML or JSON)."""
    import yaml

    try:
        data = yaml.safe_load(open(path, encoding="utf-8").read())
    except OSError as e:
        raise CliError(f"cannot read {path}: {e}") from None
    except yaml.YAMLError as e:  # its text spans several lines (context, a caret); an error here is one line
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(e, "problem", None) or " ".join(str(e).split())
        raise CliError(f"cannot read {path}: {reason}{where}") from None
    if isinstance(data, dict) and "endpoints" in data:
        company = company or data.get("company")
        data = data["endpoints"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise CliError(f"{path}: expected an endpoint, a list of endpoints or {{company, endpoints}}")
    if not company:
        raise CliError("no company: pass --company or put 'company:' in the file")
    return company, data


def cmd_endpoints_apply(args, settings: Settings) -> None:
    from dataapi.data_api.definitions import parse_definition
    from dataapi.data_api.endpoints import upsert_endpoint
    from dataapi.data_api.params import DefinitionError

    company_slug, items = _definitions(args.file, args.company)
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, company_slug)
        for i, item in enumerate(items, 1):
            try:
                d = parse_definition(item, settings.default_max_rows, settings.max_rows_cap)
            except DefinitionError as e:
                raise CliError(f"{args.file}: endpoint #{i}: {e}") from None
            endpoint, created = upsert_endpoint(s, company, d)
            print(f"{'created' if created else 'updated'} {company.slug}:{endpoint.namespace}/{endpoint.slug} "
                  f"({endpoint.execution_mode}{'' if endpoint.active else ', inactive'})")


def cmd_endpoints_list(args, settings: Settings) -> None:
    from dataapi.data_api.definitions import specs_of
    from dataapi.data_api.endpoints import list_endpoints

    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        for e in list_endpoints(s, company.id):
            params = ", ".join(f"{p.name}:{p.type}{'' if not p.required else '!'}" for p in specs_of(e))
            print(f"{e.namespace}/{e.slug}\t{e.execution_mode}\t{'active' if e.active else 'inactive'}\t{params}")


def cmd_data_load(args, settings: Settings) -> None:
    from activities.duck import CompanyDatabases, LoadFailed

    with session_scope(_engine(settings)) as s:
        identity.require_company(s, args.company)
    try:
        rows = CompanyDatabases(settings.resolved_data_dir).load_file(args.company, args.table, Path(args.file))
    except (FileNotFoundError, LoadFailed) as e:
        raise CliError(f"cannot load {args.file}: {e}") from None
    print(f"loaded {rows} rows into {args.company}.{args.table}")


def cmd_share_create(args, settings: Settings) -> None:
    from dataapi.data_api.endpoints import find_endpoint
    from dataapi.data_api.params import DefinitionError
    from dataapi.data_api.share_contexts import create_share_context, describe_share_context

    try:
        rules = json.loads(args.rules)
    except json.JSONDecodeError as e:
        raise CliError(f"--rules is not JSON: {e}") from None
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        endpoint = None
        if args.endpoint:
            namespace, _, slug = args.endpoint.rpartition("/")
            endpoint = find_endpoint(s, company.id, namespace or "default", slug, active_only=False)
            if endpoint is None:
                raise CliError(f"endpoint {args.endpoint!r} does not exist")
        try:
            row = create_share_context(s, company, rules, user_name=args.user, api_key=args.api_key,
                                       endpoint=endpoint)
        except DefinitionError as e:
            raise CliError(str(e)) from None
        print(json.dumps(describe_share_context(s, row)))


def cmd_webhooks(args, settings: Settings, rotate: bool) -> None:
    from dataapi.callbacks import secrets as webhook_secrets
    from dataapi.secrets import secret_key

    box = webhook_secrets.SecretBox(secret_key(settings))
    grace = settings.webhook_secret_grace_seconds
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        describe = webhook_secrets.rotate if rotate else webhook_secrets.describe
        print(json.dumps(describe(s, box, company.id, grace)))


def repository_code(runner: str, path: Path, entry: str, outputs: list[str], result: str | None) -> dict:
    """A repository's code from disk: a folder of files (python) or a .sql script (sql)."""
    if runner == "python":
        if not path.is_dir():
            raise CliError(f"{path} is not a folder")
        files = {p.relative_to(path).as_posix(): p.read_text(encoding="utf-8")
                 for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
        return {"files": files, "entry_point": entry}
    return {"script": path.read_text(encoding="utf-8"), "outputs": outputs, "result": result}


def cmd_repositories_create(args, settings: Settings) -> None:
    from dataapi.jobs_api import repositories

    try:
        data = {"name": args.name, "runner": args.runner,
                "code": repository_code(args.runner, Path(args.path), args.entry, args.output or [], args.result),
                "default_params": json.loads(args.params), "metadata": json.loads(args.metadata)}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CliError(str(e)) from None
    if args.id:
        data["id"] = args.id
    with session_scope(_engine(settings)) as s:
        company = identity.require_company(s, args.company)
        repo, created = repositories.upsert_repository(s, company.id, data)
        print(json.dumps({"repository_id": repo.repo_id, "created": created}))


# --- parser ------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dataapi", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, func: Callable, help_: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    add(sub, "dev", cmd_dev, "Run the embedded stack: Temporal dev server + UI, worker, API, demo company")
    api = add(sub, "api", cmd_api, "Run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    w = add(sub, "worker", cmd_worker, "Run a Temporal worker")
    w.add_argument("--queues", default="queries,jobs,callbacks", help="task queues to serve (default: all)")

    db = sub.add_parser("db", help="Metadata store").add_subparsers(dest="db_command", required=True)
    add(db, "upgrade", cmd_db_upgrade, "Apply the migrations")

    tmp = sub.add_parser("temporal", help="Temporal cluster").add_subparsers(dest="temporal_command", required=True)
    add(tmp, "setup", cmd_temporal_setup, "Register the search attributes the Temporal UI filters jobs by")

    jwt = sub.add_parser("jwt", help="Token signing keys").add_subparsers(dest="jwt_command", required=True)
    add(jwt, "rotate", cmd_jwt_rotate, "Add a new signing key to the embedded keyset (older keys still verify)")

    pk = sub.add_parser("payload-keys", help="Keys of the Temporal payload encryption").add_subparsers(
        dest="payload_keys_command", required=True)
    r = add(pk, "rotate", cmd_payload_keys_rotate,
            "Add a new payload key and make it the active one (older keys still decode); with "
            "DATAAPI_PAYLOAD_KEYSET set, print the rotated keyset instead of writing var/payload-keys.json")
    r.add_argument("--no-activate", action="store_true",
                   help="add the key without making it active (the first step of a rolling rotation)")
    add(pk, "generate", cmd_payload_keys_generate, "Print a new keyset for DATAAPI_PAYLOAD_KEYSET")

    companies = sub.add_parser("companies", help="Companies (tenants)").add_subparsers(
        dest="companies_command", required=True)
    c = add(companies, "create", cmd_companies_create, "Create a company")
    c.add_argument("slug", help="kebab-case slug, e.g. acme")
    c.add_argument("--name", help="display name (default: the slug)")

    users = sub.add_parser("users", help="Users of a company").add_subparsers(dest="users_command", required=True)
    u = add(users, "create", cmd_users_create, "Create a user")
    u.add_argument("--company", required=True)
    u.add_argument("--name", required=True)
    u.add_argument("--policy", action="append", choices=sorted(POLICIES), help="managed policy (repeatable)")
    u.add_argument("--kind", choices=["integration", "human"], default="integration")
    for name, disabled in (("disable", True), ("enable", False)):
        d = add(users, name, lambda a, s, d=disabled: cmd_users_disable(a, s, d), f"{name.capitalize()} a user")
        d.add_argument("--company", required=True)
        d.add_argument("--name", required=True)

    keys = sub.add_parser("keys", help="API keys of integration users").add_subparsers(
        dest="keys_command", required=True)
    k = add(keys, "create", cmd_keys_create, "Create an API key (the secret is printed once)")
    k.add_argument("--company", required=True)
    k.add_argument("--user", required=True)
    k.add_argument("--json", action="store_true", help="print exactly {company_slug, api_key, api_secret}")
    r = add(keys, "revoke", cmd_keys_revoke, "Revoke an API key")
    r.add_argument("key_id")

    endpoints = sub.add_parser("endpoints", help="Visualization endpoints").add_subparsers(
        dest="endpoints_command", required=True)
    a = add(endpoints, "apply", cmd_endpoints_apply, "Create or update endpoints from a YAML or JSON file")
    a.add_argument("file")
    a.add_argument("--company", help="company slug (default: 'company' in the file)")
    lst = add(endpoints, "list", cmd_endpoints_list, "List a company's endpoints")
    lst.add_argument("--company", required=True)

    data = sub.add_parser("data", help="Company data").add_subparsers(dest="data_command", required=True)
    ld = add(data, "load", cmd_data_load, "Load a CSV, Parquet or JSON file into a table of the company's database")
    ld.add_argument("--company", required=True)
    ld.add_argument("--table", required=True)
    ld.add_argument("file")

    share = sub.add_parser("share-contexts", help="Share contexts").add_subparsers(
        dest="share_command", required=True)
    sc = add(share, "create", cmd_share_create, "Restrict parameter values for a user or an API key")
    sc.add_argument("--company", required=True)
    who = sc.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--api-key")
    sc.add_argument("--endpoint", help="namespace/slug (default: every endpoint)")
    sc.add_argument("--rules", required=True, help='JSON, e.g. {"regiao": {"allowed": ["Sul"]}}')
    repos = sub.add_parser("repositories", help="Job repositories (Jobs API)").add_subparsers(
        dest="repositories_command", required=True)
    rc = add(repos, "create", cmd_repositories_create, "Register (or update, with --id) a repository")
    rc.add_argument("--company", required=True)
    rc.add_argument("--name", required=True)
    rc.add_argument("--runner", choices=["python", "sql"], required=True)
    rc.add_argument("--path", required=True, help="python: the repository folder; sql: the .sql script")
    rc.add_argument("--id", help="repository_id (default: generated)")
    rc.add_argument("--entry", default="main.py", help="python entry point inside the folder")
    rc.add_argument("--output", action="append", help="sql: a table written to output/ (repeatable)")
    rc.add_argument("--result", help="sql: the query whose rows make result.json")
    rc.add_argument("--params", default="{}", help="default params (JSON object)")
    rc.add_argument("--metadata", default="{}", help="metadata (JSON object)")

    webhooks = sub.add_parser("webhooks", help="Webhook signing secrets").add_subparsers(
        dest="webhooks_command", required=True)
    for name, rotate, help_ in (("secret", False, "Print the company's webhook signing secret"),
                                ("rotate", True, "Rotate the signing secret (the old one signs during the grace)")):
        wh = add(webhooks, name, lambda a, s, r=rotate: cmd_webhooks(a, s, r), help_)
        wh.add_argument("--company", required=True)
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
    """The ``dataapi`` console script and ``python -m dataapi.cli``: ``main``, then, in a process that made a
    Temporal client, an exit that skips the interpreter's teardown once output and logs are flushed. The SDK's
    Rust threads outlive the event loop and can call into Python while it finalizes, which aborts the process
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
