"""The Data API's commands: visualization endpoints from a YAML or JSON file, company data, share contexts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import CliError, Subparsers, add, engine, group
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.models import pk
from dataapi.settings import Settings


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


def cmd_endpoints_apply(args: argparse.Namespace, settings: Settings) -> None:
    """Every endpoint of the file is parsed and validated (its SQL bound on the company's current database)
    before any is written: one that does not validate leaves the store as it was. ``--dry-run`` stops there."""
    from dataapi.data_api.definitions import parse_definition
    from dataapi.data_api.endpoints import find_endpoint, upsert_endpoint, validated
    from dataapi.data_api.params import DefinitionError

    company_slug, items = _definitions(args.file, args.company)
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, company_slug)
        checked = []
        for i, item in enumerate(items, 1):
            try:
                d = parse_definition(item, settings.default_max_rows, settings.max_rows_cap,
                                     settings.export_max_rows_cap)
                columns, warnings = validated(settings, company, d, validate=not args.no_validate)
            except DefinitionError as e:  # validate.SqlProblem included
                raise CliError(f"{args.file}: endpoint #{i}: {e}") from None
            checked.append((d, columns, warnings))
        for d, columns, warnings in checked:
            name = f"{company.slug}:{d.namespace}/{d.slug}"
            for warning in warnings:
                print(f"warning: {name}: {warning}")
            if args.dry_run:
                exists = find_endpoint(s, pk(company), d.namespace, d.slug, active_only=False) is not None
                shown = ", ".join(f"{c['name']} {c['duckdb_type']}" for c in columns or ())
                print(f"would {'update' if exists else 'create'} {name} ({d.execution_mode}"
                      f"{'' if d.active else ', inactive'}){f': {shown}' if columns is not None else ''}")
                continue
            endpoint, created = upsert_endpoint(s, company, d, columns)
            print(f"{'created' if created else 'updated'} {company.slug}:{endpoint.namespace}/{endpoint.slug} "
                  f"({endpoint.execution_mode}{'' if endpoint.active else ', inactive'})")
        if args.dry_run:
            s.rollback()


def cmd_endpoints_list(args: argparse.Namespace, settings: Settings) -> None:
    from dataapi.data_api.definitions import specs_of
    from dataapi.data_api.endpoints import list_endpoints

    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        for e in list_endpoints(s, pk(company)):
            params = ", ".join(f"{p.name}:{p.type}{'' if not p.required else '!'}" for p in specs_of(e))
            print(f"{e.namespace}/{e.slug}\t{e.execution_mode}\t{'active' if e.active else 'inactive'}\t{params}")


def cmd_data_load(args: argparse.Namespace, settings: Settings) -> None:
    from activities.duck.errors import LoadFailed
    from activities.duck.versions import load

    with session_scope(engine(settings)) as s:
        identity.require_company(s, args.company)
    try:
        done = load(settings.resolved_data_dir, args.company, args.table, Path(args.file), replace=not args.append,
                    by=_os_user(), via="cli")
    except (FileNotFoundError, LoadFailed) as e:
        raise CliError(f"cannot load {args.file}: {e}") from None
    print(f"loaded {done.rows} rows into {args.company}.{args.table} ({done.mode}, {done.version})")


def _os_user() -> str | None:
    """Who runs the command, for the load history; None where the system cannot tell."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def cmd_share_create(args: argparse.Namespace, settings: Settings) -> None:
    from dataapi.data_api.endpoints import find_endpoint
    from dataapi.data_api.params import DefinitionError
    from dataapi.data_api.share_contexts import create_share_context, describe_share_context

    try:
        rules = json.loads(args.rules)
    except json.JSONDecodeError as e:
        raise CliError(f"--rules is not JSON: {e}") from None
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        endpoint = None
        if args.endpoint:
            namespace, _, slug = args.endpoint.rpartition("/")
            endpoint = find_endpoint(s, pk(company), namespace or "default", slug, active_only=False)
            if endpoint is None:
                raise CliError(f"endpoint {args.endpoint!r} does not exist")
        try:
            row = create_share_context(s, company, rules, user_name=args.user, api_key=args.api_key,
                                       endpoint=endpoint)
        except DefinitionError as e:
            raise CliError(str(e)) from None
        print(json.dumps(describe_share_context(s, row)))


def register(sub: Subparsers) -> None:
    endpoints = group(sub, "endpoints", "Visualization endpoints")
    a = add(endpoints, "apply", cmd_endpoints_apply, "Create or update endpoints from a YAML or JSON file")
    a.add_argument("file")
    a.add_argument("--company", help="company slug (default: 'company' in the file)")
    a.add_argument("--dry-run", action="store_true",
                   help="validate every endpoint and print what would change; write nothing")
    a.add_argument("--no-validate", action="store_true",
                   help="do not bind the SQL on the company's database (its tables are not loaded yet): "
                        "saved with a warning")
    lst = add(endpoints, "list", cmd_endpoints_list, "List a company's endpoints")
    lst.add_argument("--company", required=True)

    data = group(sub, "data", "Company data")
    ld = add(data, "load", cmd_data_load, "Load a CSV, Parquet or JSON file into a table of the company's database")
    ld.add_argument("--company", required=True)
    ld.add_argument("--table", required=True)
    ld.add_argument("--append", action="store_true", help="add the rows to the table (default: replace it)")
    ld.add_argument("file")

    share = group(sub, "share-contexts", "Share contexts")
    sc = add(share, "create", cmd_share_create, "Restrict parameter values for a user or an API key")
    sc.add_argument("--company", required=True)
    who = sc.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--api-key")
    sc.add_argument("--endpoint", help="namespace/slug (default: every endpoint)")
    sc.add_argument("--rules", required=True, help='JSON, e.g. {"regiao": {"allowed": ["Sul"]}}')
