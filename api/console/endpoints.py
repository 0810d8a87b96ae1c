"""Endpoints: the list (mode, last run, error rate), create and edit (the SQL, the parameters, validation on
save with DuckDB's message at its line), and the Run panel (a form from the parameters; the rows as a table, the
API's JSON and a ready curl).

Saving goes through the same services as the Admin API (``definitions.parse_definition``,
``endpoints.validated``, ``endpoints.upsert_endpoint``); running goes through the Data API itself
(``api.console.apicall``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.console import apicall
from api.console.web import PREFIX, ctx_of, form, page, redirect, render, text, visitor_of
from dataapi.data_api import catalog, definitions, endpoints
from dataapi.data_api.params import TYPES, DefinitionError
from dataapi.data_api.validate import SqlProblem
from dataapi.errors import NotFound
from dataapi.identity.sessions import Visitor
from dataapi.models import Company, Job, utcnow
from dataapi.statuses import ExecutionMode, JobStatus

STATS_WINDOW = timedelta(days=7)


def _stats(session: Session, company_id: int) -> dict[int, dict[str, Any]]:
    """Per endpoint: its last run, and its runs and failures over the last 7 days."""
    since = utcnow() - STATS_WINDOW
    recent = case((col(Job.created_at) >= since, 1), else_=0)
    failed = case(((col(Job.created_at) >= since) & (col(Job.status) == JobStatus.FAILED), 1), else_=0)
    rows = session.execute(select(Job.endpoint_id, func.max(Job.created_at), func.sum(recent), func.sum(failed))
                           .where(Job.company_id == company_id).group_by(col(Job.endpoint_id))).all()
    return {eid: {"last_run": last, "runs": int(runs or 0), "failures": int(fails or 0)}
            for eid, last, runs, fails in rows}


def _list(session: Session, visitor: Visitor) -> list[dict[str, Any]]:
    manager = visitor.may("admin:endpoints")
    rows = endpoints.list_endpoints(session, visitor.company_id) if manager else [
        e for e in endpoints.list_endpoints(session, visitor.company_id) if e.active]
    stats = _stats(session, visitor.company_id)
    out = []
    for e in rows:
        s = stats.get(e.id or 0, {"last_run": None, "runs": 0, "failures": 0})
        rate = f"{100 * s['failures'] / s['runs']:.0f}%" if s["runs"] else "–"
        out.append({"namespace": e.namespace, "slug": e.slug, "description": e.description,
                    "mode": e.execution_mode, "active": e.active, "last_run": s["last_run"], "runs": s["runs"],
                    "error_rate": rate})
    return out


@page("data_api:execute")
async def list_page(request: Request) -> Response:
    visitor = visitor_of(request)
    rows = await ctx_of(request).transaction(_list, visitor)
    return render(request, "endpoints/list.html", endpoints=rows, manager=visitor.may("admin:endpoints"))


# --- create and edit -----------------------------------------------------------------------------------

def _param_rows(data: FormData) -> list[dict[str, Any]]:
    """The parameter editor's rows (``p_name`` ... one value per row) as definitions; blank rows are skipped."""
    columns = {k: data.getlist(f"p_{k}") for k in ("name", "type", "required", "default", "allowed", "pattern",
                                                   "description", "max_length")}
    params = []
    for i, name in enumerate(columns["name"]):
        def value(key: str, i: int = i) -> str:
            values = columns[key]
            v = values[i] if i < len(values) else ""
            return v.strip() if isinstance(v, str) else ""

        if not isinstance(name, str) or not name.strip():
            continue
        p: dict[str, Any] = {"name": name.strip(), "type": value("type"), "required": value("required") == "yes"}
        if value("default"):
            p["default"] = value("default")
        if value("allowed"):
            p["allowed_values"] = [v.strip() for v in value("allowed").split(",") if v.strip()]
        if value("pattern"):
            p["pattern"] = value("pattern")
        if value("description"):
            p["description"] = value("description")
        if value("max_length"):
            p["max_length"] = int(value("max_length")) if value("max_length").isdigit() else value("max_length")
        params.append(p)
    return params


def _definition(data: FormData, namespace: str | None = None, slug: str | None = None) -> dict[str, Any]:
    max_rows = text(data, "max_rows")
    d: dict[str, Any] = {
        "namespace": namespace or text(data, "namespace") or "default", "slug": slug or text(data, "slug"),
        "description": text(data, "description"), "sql": str(data.get("sql") or "").replace("\r\n", "\n"),
        "parameters": _param_rows(data), "execution_mode": text(data, "execution_mode") or ExecutionMode.SYNC,
        "active": data.get("active") == "on",
    }
    if max_rows:
        d["max_rows"] = int(max_rows) if max_rows.isdigit() else max_rows
    return d


def _save(session: Session, visitor: Visitor, data: dict[str, Any], settings: Any, create: bool) -> None:
    company = session.get(Company, visitor.company_id)
    assert company is not None
    d = definitions.parse_definition(data, settings.default_max_rows, settings.max_rows_cap)
    existing = endpoints.find_endpoint(session, visitor.company_id, d.namespace, d.slug, active_only=False)
    if create and existing is not None:
        raise DefinitionError(f"endpoint {d.namespace}/{d.slug} already exists; edit it instead")
    if not create and existing is None:
        raise NotFound("Endpoint not found")
    columns, _warnings = endpoints.validated(settings, company, d)
    endpoints.upsert_endpoint(session, company, d, columns)


def _editor(request: Request, data: dict[str, Any], create: bool, status: int = 200, error: str = "",
            line: int | None = None, column: int | None = None) -> Response:
    return render(request, "endpoints/edit.html", status=status, d=data, create=create, error=error,
                  error_line=line, error_column=column, types=TYPES, modes=list(ExecutionMode))


async def _submit(request: Request, create: bool, namespace: str | None = None, slug: str | None = None
                  ) -> Response:
    ctx = ctx_of(request)
    data = _definition(await form(request), namespace, slug)
    try:
        await ctx.transaction(_save, visitor_of(request), data, ctx.settings, create)
    except SqlProblem as e:
        return _editor(request, data, create, 422, e.message, e.line, e.column)
    except DefinitionError as e:
        return _editor(request, data, create, 400, e.message)
    return redirect(f"/endpoints/{data['namespace']}/{data['slug']}?saved=1")


@page("admin:endpoints")
async def new_page(request: Request) -> Response:
    blank = {"namespace": "default", "slug": "", "description": "", "sql": "SELECT 1 AS one", "parameters": [],
             "execution_mode": "sync", "active": True, "max_rows": ctx_of(request).settings.default_max_rows}
    return _editor(request, blank, True)


@page("admin:endpoints")
async def create(request: Request) -> Response:
    return await _submit(request, True)


def _stored(session: Session, visitor: Visitor, namespace: str, slug: str) -> dict[str, Any]:
    endpoint = endpoints.find_endpoint(session, visitor.company_id, namespace, slug, active_only=False)
    if endpoint is None:
        raise NotFound("Endpoint not found")
    return definitions.describe_endpoint(endpoint)


@page("admin:endpoints")
async def edit_page(request: Request) -> Response:
    p = request.path_params
    data = await ctx_of(request).transaction(_stored, visitor_of(request), p["namespace"], p["slug"])
    return _editor(request, data, False)


@page("admin:endpoints")
async def update(request: Request) -> Response:
    p = request.path_params
    await ctx_of(request).transaction(_stored, visitor_of(request), p["namespace"], p["slug"])  # 404 first
    return await _submit(request, False, p["namespace"], p["slug"])


# --- detail and the Run panel ------------------------------------------------------------------------

def _entry(session: Session, visitor: Visitor, namespace: str, slug: str) -> dict[str, Any]:
    """The endpoint as its catalog entry (the parameters as the visitor may send them), plus its SQL for
    managers; an inactive endpoint only for managers."""
    entry = catalog.catalog_entry(session, visitor, namespace, slug)
    manager = visitor.may("admin:endpoints")
    stored = endpoints.find_endpoint(session, visitor.company_id, namespace, slug, active_only=False)
    if stored is None or (entry is None and not manager):
        raise NotFound("Endpoint not found")
    described = definitions.describe_endpoint(stored)
    if entry is None:
        entry = {**described, "parameters": [{**p, "fixed": False} for p in described["parameters"]]}
    entry["active"] = stored.active
    entry["sql"] = described["sql"] if manager else None
    return entry


def _run_values(data: FormData, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for p in parameters:
        raw = data.get(f"v_{p['name']}")
        if p.get("fixed") or not isinstance(raw, str) or raw == "":
            continue
        values[p["name"]] = raw
    return values


async def _detail(request: Request, run: bool) -> Response:
    p = request.path_params
    ctx, visitor = ctx_of(request), visitor_of(request)
    entry = await ctx.transaction(_entry, visitor, p["namespace"], p["slug"])
    values: dict[str, Any] = {}
    body: dict[str, Any] = {"parameter_values": {}}
    answer = None
    if run:
        data = await form(request)
        values = _run_values(data, entry["parameters"])
        body = {"parameter_values": values}
        callback = text(data, "callback_url")
        if callback:
            body["callback_url"] = callback
        answer = await apicall.call(request, visitor, "POST", f"/{p['namespace']}/{p['slug']}/execute", body)
    placeholders = {q["name"]: values.get(q["name"], f"<{q['type']}>") for q in entry["parameters"]
                    if not q.get("fixed")}
    result = answer.json if answer is not None and answer.ok else None
    return render(request, "endpoints/detail.html", e=entry, values=values, answer=answer,
                  result=result if isinstance(result, dict) else None,
                  curl=apicall.curl(ctx.settings.base_url, p["namespace"], p["slug"],
                                    {"parameter_values": placeholders}),
                  manager=visitor.may("admin:endpoints"), saved=request.query_params.get("saved") == "1")


@page("data_api:execute")
async def detail_page(request: Request) -> Response:
    return await _detail(request, False)


@page("data_api:execute")
async def run(request: Request) -> Response:
    return await _detail(request, True)


routes = [
    Route(PREFIX + "/endpoints", list_page, methods=["GET"]),
    Route(PREFIX + "/endpoints/new", new_page, methods=["GET"]),
    Route(PREFIX + "/endpoints/new", create, methods=["POST"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}", detail_page, methods=["GET"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}/run", run, methods=["POST"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}/edit", edit_page, methods=["GET"]),
    Route(PREFIX + "/endpoints/{namespace}/{slug}/edit", update, methods=["POST"]),
]
