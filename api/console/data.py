"""Data: the company's tables (columns, types, row counts) and uploads of a CSV, Parquet or JSON file that create,
replace or append to a table, with the company's load history.

The load is the one ``dataapi data load`` runs (``activities.duck.versions.load``: a new database version,
switched atomically, and a line in the history the loader keeps next to the versions), so the history lists every
load, from the CLI or from here. It runs in a child process of the API, as the CLI does, so that DuckDB's writing
and its memory stay out of the API process; the listing reads the current version read-only and the history in
the same way."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.console.web import PREFIX, ctx_of, form, page, render, text, visitor_of
from dataapi.data_api.params import NAME_RE
from dataapi.errors import DomainError, InvalidDefinition, Unavailable

MAX_UPLOAD = 1 << 30
CHILD_TIMEOUT = 600.0
HISTORY_SHOWN = 50

# The child's program: ``load`` (the CLI's loader, which records the load in the company's history) or ``tables``
# (the current version's tables and the history of loads); it prints one JSON object.
CHILD = r"""
import json, sys
from dataclasses import asdict
from pathlib import Path
op, data_dir, slug = sys.argv[1:4]
from activities.duck import load_history
from activities.duck.versions import company_dir, load, read_current
from activities.duck.errors import LoadFailed
cdir = company_dir(Path(data_dir).resolve(), slug)
if op == "load":
    table, path, mode, original, who = sys.argv[4:9]
    try:
        done = load(Path(data_dir), slug, table, Path(path), replace=(mode == "replace"), name=original, by=who,
                    via="console")
    except LoadFailed as e:
        print(json.dumps({"error": str(e)})); sys.exit(0)
    print(json.dumps(asdict(done)))
else:
    import duckdb
    name = read_current(cdir)
    out = {"version": name, "tables": [], "history": load_history.read(cdir, int(sys.argv[4]))}
    if name:
        con = duckdb.connect(str(cdir / name), read_only=True)
        try:
            for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                    "ORDER BY table_name").fetchall():
                cols = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                                   "current_database() AND table_name = ? ORDER BY column_index", [t]).fetchall()
                count = con.execute('SELECT count(*) FROM "' + t.replace('"', '""') + '"').fetchone()[0]
                out["tables"].append({"name": t, "rows": count, "columns": [{"name": c, "type": d} for c, d in cols]})
        finally:
            con.close()
    print(json.dumps(out))
"""


async def _child(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DomainError("The load took too long and was stopped", status=504, code="TIMEOUT") from None
    if proc.returncode != 0:
        raise Unavailable("data loader", f"The data loader failed: {err.decode(errors='replace')[-300:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


async def _data_page(request: Request, status: int = 200, **values: Any) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    data_dir = ctx.settings.resolved_data_dir
    listing = await _child("tables", str(data_dir), visitor.company_slug, str(HISTORY_SHOWN))
    return render(request, "data.html", status=status, tables=listing["tables"], version=listing["version"],
                  history=listing["history"], **values)


@page("admin:endpoints")
async def data_page(request: Request) -> Response:
    return await _data_page(request)


def _save_upload(upload: UploadFile, folder: Path) -> Path:
    suffix = Path(upload.filename or "upload").suffix.lower()
    if suffix not in (".csv", ".parquet", ".json", ".ndjson", ".jsonl", ".tsv", ".txt"):
        raise InvalidDefinition("upload a .csv, .parquet or .json file")
    target = folder / f"upload{suffix}"
    copied = 0
    upload.file.seek(0)
    with target.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_UPLOAD:
                raise InvalidDefinition(f"the file is larger than {MAX_UPLOAD >> 20} MB")
            out.write(chunk)
    return target


@page("admin:endpoints")
async def upload(request: Request) -> Response:
    ctx, visitor = ctx_of(request), visitor_of(request)
    data = await form(request)
    table, mode, file = text(data, "table"), text(data, "mode") or "replace", data.get("file")
    try:
        if not NAME_RE.fullmatch(table):
            raise InvalidDefinition(f"the table name must match {NAME_RE.pattern} (lowercase, digits, _)")
        if mode not in ("replace", "append"):
            raise InvalidDefinition("mode must be replace or append")
        if not isinstance(file, UploadFile) or not file.filename:
            raise InvalidDefinition("choose a file to upload")
        with tempfile.TemporaryDirectory(prefix="console-upload-") as tmp:
            path = await run_in_threadpool(_save_upload, file, Path(tmp))
            result = await _child("load", str(ctx.settings.resolved_data_dir), visitor.company_slug, table,
                                  str(path), mode, file.filename[:200], visitor.user_name)
        if "error" in result:
            raise InvalidDefinition(f"cannot load {file.filename}: {result['error']}")
    except InvalidDefinition as e:
        return await _data_page(request, 400, error=e.message, table=table)
    return await _data_page(request, notice=f"Loaded {result['rows']} rows into {table} ({result['mode']}); "
                                            f"the new version is {result['version']}.")


routes = [
    Route(PREFIX + "/data", data_page, methods=["GET"]),
    Route(PREFIX + "/data", upload, methods=["POST"]),
]
