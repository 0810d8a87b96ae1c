"""Repositories of the Jobs API: the analytics code a company registers, and every query of them."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from sqlmodel import Session, col, select

from dataapi.errors import Conflict, InvalidDefinition, NotFound
from dataapi.jobs_api.code import RepositoryCodeError, validate_code
from dataapi.models import Repository, utcnow
from dataapi.statuses import Runner

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
RUNNERS = tuple(Runner)


class RepositoryError(InvalidDefinition):
    """An invalid repository definition (a 400 for admins, a clear line for the CLI)."""


def new_repo_id() -> str:
    """Like the seed's example: the creation time to the second and four random digits."""
    return utcnow().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10_000):04d}"


def _json_object(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RepositoryError(f"'{name}' must be a JSON object")
    return value


def upsert_repository(session: Session, company_id: int, data: Any) -> tuple[Repository, bool]:
    """Creates or replaces a repository from {id?, name, runner, code, default_params?, metadata?}; True when it
    was created."""
    if not isinstance(data, dict):
        raise RepositoryError("a repository definition must be an object")
    unknown = set(data) - {"id", "name", "runner", "code", "default_params", "metadata"}
    if unknown:
        raise RepositoryError(f"unknown field {sorted(unknown)[0]!r}")
    repo_id = data.get("id") or new_repo_id()
    if not isinstance(repo_id, str) or not REPO_ID_RE.match(repo_id):
        raise RepositoryError("'id' must be 1 to 64 letters, digits, '-' or '_'")
    name, runner = data.get("name"), data.get("runner")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise RepositoryError("'name' is required (at most 200 characters)")
    if runner not in RUNNERS:
        raise RepositoryError("'runner' must be 'python' or 'sql'")
    try:
        code = validate_code(runner, data.get("code"))
    except RepositoryCodeError as e:
        raise RepositoryError(f"'code': {e}") from None
    repo = find_repository(session, company_id, repo_id)
    created = repo is None
    if repo is None:
        repo = Repository(company_id=company_id, repo_id=repo_id, name=name, runner=runner, code="{}")
    repo.name, repo.runner, repo.code = name, runner, json.dumps(code)
    repo.default_params = json.dumps(_json_object(data.get("default_params"), "default_params"))
    repo.repo_metadata = json.dumps(_json_object(data.get("metadata"), "metadata"))
    repo.updated_at = utcnow()
    session.add(repo)
    session.flush()
    return repo, created


def find_repository(session: Session, company_id: int, repo_id: str) -> Repository | None:
    return session.exec(select(Repository).where(Repository.company_id == company_id,
                                                 Repository.repo_id == repo_id)).first()


def describe_repository(repo: Repository, with_code: bool = False) -> dict:
    out = {"id": repo.repo_id, "name": repo.name, "runner": repo.runner,
           "default_params": json.loads(repo.default_params), "metadata": json.loads(repo.repo_metadata)}
    if with_code:
        out["code"] = json.loads(repo.code)
    return out


def list_repositories(session: Session, company_id: int) -> list[Repository]:
    return list(session.exec(select(Repository).where(Repository.company_id == company_id)
                             .order_by(col(Repository.repo_id))).all())


# --- what the Admin API and the CLI call ---------------------------------------------------------------

def create_repository(session: Session, company_id: int, data: Any) -> Repository:
    """A new repository; one whose id is taken is a conflict (PUT replaces)."""
    if isinstance(data, dict) and isinstance(data.get("id"), str) and find_repository(session, company_id, data["id"]):
        raise Conflict(f"Repository {data['id']} already exists; use PUT to change it")
    return upsert_repository(session, company_id, data)[0]


def put_repository(session: Session, company_id: int, repo_id: str, data: dict) -> tuple[Repository, bool]:
    """Creates or replaces the repository ``repo_id`` (idempotent)."""
    if data.get("id", repo_id) != repo_id:
        raise InvalidDefinition("id in the body must match the path")
    return upsert_repository(session, company_id, {**data, "id": repo_id})


def get_repository(session: Session, company_id: int, repo_id: str) -> Repository:
    repo = find_repository(session, company_id, repo_id)
    if repo is None:
        raise NotFound("Repository not found")
    return repo
