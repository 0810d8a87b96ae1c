"""Job repositories of the Jobs API: register or update one from a folder (python) or a .sql script (sql)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import CliError, Subparsers, add, engine, group
from dataapi.db import session_scope
from dataapi.identity import service as identity
from dataapi.models import pk
from dataapi.settings import Settings
from dataapi.statuses import Runner


def repository_code(runner: str, path: Path, entry: str, outputs: list[str], result: str | None) -> dict:
    """A repository's code from disk: a folder of files (python) or a .sql script (sql)."""
    if runner == Runner.PYTHON:
        if not path.is_dir():
            raise CliError(f"{path} is not a folder")
        files = {p.relative_to(path).as_posix(): p.read_text(encoding="utf-8")
                 for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
        return {"files": files, "entry_point": entry}
    return {"script": path.read_text(encoding="utf-8"), "outputs": outputs, "result": result}


def cmd_repositories_create(args: argparse.Namespace, settings: Settings) -> None:
    from dataapi.jobs_api import repositories

    try:
        data = {"name": args.name, "runner": args.runner,
                "code": repository_code(args.runner, Path(args.path), args.entry, args.output or [], args.result),
                "default_params": json.loads(args.params), "metadata": json.loads(args.metadata)}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CliError(str(e)) from None
    if args.id:
        data["id"] = args.id
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        repo, created = repositories.upsert_repository(s, pk(company), data)
        print(json.dumps({"repository_id": repo.repo_id, "created": created}))


def register(sub: Subparsers) -> None:
    repos = group(sub, "repositories", "Job repositories (Jobs API)")
    rc = add(repos, "create", cmd_repositories_create, "Register (or update, with --id) a repository")
    rc.add_argument("--company", required=True)
    rc.add_argument("--name", required=True)
    rc.add_argument("--runner", choices=list(Runner), required=True)
    rc.add_argument("--path", required=True, help="python: the repository folder; sql: the .sql script")
    rc.add_argument("--id", help="repository_id (default: generated)")
    rc.add_argument("--entry", default="main.py", help="python entry point inside the folder")
    rc.add_argument("--output", action="append", help="sql: a table written to output/ (repeatable)")
    rc.add_argument("--result", help="sql: the query whose rows make result.json")
    rc.add_argument("--params", default="{}", help="default params (JSON object)")
    rc.add_argument("--metadata", default="{}", help="metadata (JSON object)")
