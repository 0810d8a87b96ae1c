"""Repositories (register or update code from a single file or a zip, runner, default params; recent runs) and
Settings (the webhook signing secret: reveal, rotate with the grace period shown), through the services the Admin
API calls."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from sqlmodel import Session, col, select
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.console.web import PREFIX, ctx_of, form, page, redirect, render, text, visitor_of
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.errors import DomainError, InvalidDefinition
from dataapi.identity.sessions import Visitor
from dataapi.jobs_api import repositories
from dataapi.jobs_api.code import CODE_MAX_BYTES
from dataapi.models import RepoJob
from dataapi.statuses import RepoJobStatus

RECENT_RUNS = 10


# --- repositories ---------------------------------------------------------------------------------------

def _repositories(session: Session, visitor: Visitor) -> list[dict[str, Any]]:
    out = []
    for repo in repositories.list_repositories(session, visitor.company_id):
        runs = session.exec(select(RepoJob).where(RepoJob.repository_id == repo.id,
                                                  RepoJob.status != RepoJobStatus.DELETED)
                            .order_by(col(RepoJob.created_at).desc()).limit(RECENT_RUNS)).all()
        code = json.loads(repo.code)
        out.append({**repositories.describe_repository(repo), "runs": runs,
                    "files": sorted(code.get("files", {})) if repo.runner == "python" else ["script.sql"],
                    "entry_point": code.get("entry_point", "")})
    return out


async def _repositories_page(request: Request, status: int = 200, **values: Any) -> Response:
    repos = await ctx_of(request).transaction(_repositories, visitor_of(request))
    return render(request, "repositories.html", status=status, repositories=repos, **values)


@page("admin:repositories")
async def repositories_page(request: Request) -> Response:
    return await _repositories_page(request, notice="Saved." if request.query_params.get("saved") else "")


async def _code(upload: UploadFile, runner: str, entry_point: str) -> dict[str, Any]:
    """The repository's code from one uploaded file or a zip of files (python), or one SQL script (sql)."""
    raw = await upload.read(CODE_MAX_BYTES + 1)
    if len(raw) > CODE_MAX_BYTES:
        raise InvalidDefinition(f"the upload is larger than {CODE_MAX_BYTES >> 20} MB")
    name = (upload.filename or "main.py").rsplit("/", 1)[-1]
    if runner == "sql":
        return {"script": _text(raw, name), "outputs": [], "result": entry_point or None}
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                infos = [i for i in z.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
                if sum(i.file_size for i in infos) > CODE_MAX_BYTES:
                    raise InvalidDefinition(f"the zip unpacks to more than {CODE_MAX_BYTES >> 20} MB")
                files = {i.filename: _text(z.read(i), i.filename) for i in infos}
        except zipfile.BadZipFile:
            raise InvalidDefinition("the upload is not a valid zip file") from None
        return {"files": files, "entry_point": entry_point or "main.py"}
    return {"files": {name: _text(raw, name)}, "entry_point": name}


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDefinition(f"{name} is not UTF-8 text") from None


def _json_field(raw: str, name: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise InvalidDefinition(f"{name} is not JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None


@page("admin:repositories")
async def save_repository(request: Request) -> Response:
    data = await form(request)
    visitor = visitor_of(request)
    try:
        runner = text(data, "runner") or "python"
        body: dict[str, Any] = {"name": text(data, "name"), "runner": runner,
                                "default_params": _json_field(text(data, "default_params"), "default params"),
                                "metadata": _json_field(text(data, "metadata"), "metadata")}
        if text(data, "id"):
            body["id"] = text(data, "id")
        upload = data.get("code")
        if isinstance(upload, UploadFile) and upload.filename:
            body["code"] = await _code(upload, runner, text(data, "entry_point"))
        elif "id" in body:  # an update without new code keeps the stored code
            def stored(session: Session) -> dict:
                return repositories.describe_repository(
                    repositories.get_repository(session, visitor.company_id, body["id"]), with_code=True)["code"]
            body["code"] = await ctx_of(request).transaction(stored)
        else:
            raise InvalidDefinition("upload the repository's code: a .py file, a .zip of files, or a .sql script")
        await ctx_of(request).transaction(lambda s: repositories.upsert_repository(s, visitor.company_id, body))
    except DomainError as e:
        return await _repositories_page(request, e.status, error=e.message)
    return redirect("/repositories?saved=1")


# --- settings -------------------------------------------------------------------------------------------

@page("admin:webhooks")
async def settings_page(request: Request) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    secret = await ctx.transaction(lambda s: webhook_secrets.describe(
        s, ctx.box, visitor.company_id, ctx.settings.webhook_secret_grace_seconds))
    return render(request, "settings.html", secret=secret, rotated=request.query_params.get("rotated") == "1")


@page("admin:webhooks")
async def rotate_secret(request: Request) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    await ctx.transaction(lambda s: webhook_secrets.rotate(s, ctx.box, visitor.company_id,
                                                           ctx.settings.webhook_secret_grace_seconds))
    return redirect("/settings?rotated=1")


routes = [
    Route(PREFIX + "/repositories", repositories_page, methods=["GET"]),
    Route(PREFIX + "/repositories", save_repository, methods=["POST"]),
    Route(PREFIX + "/settings", settings_page, methods=["GET"]),
    Route(PREFIX + "/settings/webhook-secret/rotate", rotate_secret, methods=["POST"]),
]
