"""An endpoint definition (admin API body, one entry of an ``endpoints apply`` file): its validation and its
presentation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dataapi.data_api.params import DefinitionError, ParamSpec
from dataapi.data_api.validate import check_placeholders, check_sql
from dataapi.identity.service import valid_slug
from dataapi.models import Endpoint
from dataapi.statuses import ExecutionMode
from dataapi.timestamps import iso

MODES = tuple(ExecutionMode)
_FIELDS = {"namespace", "slug", "description", "sql", "parameters", "execution_mode", "max_rows", "active",
           "export_max_rows", "cache_seconds"}
MAX_CACHE_SECONDS = 30 * 86_400
EXPORT_MAX_ROWS_CAP = 10_000_000  # Settings.export_max_rows_cap's default


@dataclass(frozen=True)
class EndpointDef:
    namespace: str
    slug: str
    sql: str
    parameters: tuple[ParamSpec, ...]
    execution_mode: ExecutionMode
    max_rows: int
    active: bool
    description: str
    export_max_rows: int | None = None  # async only: every row up to this many is stored and pageable
    cache_seconds: int = 0  # sync results answered again from the result cache this long; 0: not cached


def parse_definition(data: Any, default_max_rows: int, max_rows_cap: int,
                     export_max_rows_cap: int = EXPORT_MAX_ROWS_CAP) -> EndpointDef:
    """Validates an endpoint definition; raises ``DefinitionError`` naming the first problem."""
    if not isinstance(data, dict):
        raise DefinitionError("an endpoint definition must be an object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise DefinitionError(f"unknown field {sorted(unknown)[0]!r}")
    namespace = _slug(data, "namespace", "default")
    slug = _slug(data, "slug")
    sql = data.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise DefinitionError("'sql' is required")
    if len(sql) > 100_000:
        raise DefinitionError("'sql' is longer than 100000 characters")
    check_sql(sql)  # checked again when it runs (activities.duck.shapes): stored SQL predates the list
    raw_params = data.get("parameters", [])
    if not isinstance(raw_params, list):
        raise DefinitionError("'parameters' must be a list")
    specs = tuple(ParamSpec.from_dict(p) for p in raw_params)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DefinitionError(f"parameter '{duplicates[0]}' is declared more than once")
    check_placeholders(sql, specs, unused=False)  # unused ones are refused at save (endpoints.validated)
    mode = data.get("execution_mode", ExecutionMode.SYNC)
    if mode not in MODES:
        raise DefinitionError("'execution_mode' must be 'sync' or 'async'")
    max_rows = data.get("max_rows", default_max_rows)
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or not 1 <= max_rows <= max_rows_cap:
        raise DefinitionError(f"'max_rows' must be an integer from 1 to {max_rows_cap}")
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise DefinitionError("'active' must be a boolean")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise DefinitionError("'description' must be a string of at most 2000 characters")
    export_max_rows = _export_max_rows(data, ExecutionMode(mode), max_rows, export_max_rows_cap)
    return EndpointDef(namespace, slug, sql, specs, ExecutionMode(mode), max_rows, active, description,
                       export_max_rows, _cache_seconds(data))


def _cache_seconds(data: dict[str, Any]) -> int:
    value = data.get("cache_seconds", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CACHE_SECONDS:
        raise DefinitionError(f"'cache_seconds' must be an integer from 0 (not cached) to {MAX_CACHE_SECONDS}")
    return value


def _export_max_rows(data: dict[str, Any], mode: ExecutionMode, max_rows: int, cap: int) -> int | None:
    value = data.get("export_max_rows")
    if value is None:
        return None
    if mode != ExecutionMode.ASYNC:
        raise DefinitionError("'export_max_rows' applies to async endpoints only")
    if not isinstance(value, int) or isinstance(value, bool) or not max_rows <= value <= cap:
        raise DefinitionError(f"'export_max_rows' must be an integer from max_rows ({max_rows}) to {cap}")
    return value


def _slug(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not valid_slug(value):
        raise DefinitionError(f"'{name}' must be kebab-case (lowercase letters, digits and '-')")
    return value


def specs_of(endpoint: Any) -> list[ParamSpec]:
    """The parameters of a stored endpoint (an ``Endpoint`` or an ``endpoints.Executable``)."""
    return [ParamSpec.from_dict(p, stored=True) for p in json.loads(endpoint.parameters)]


def describe_endpoint(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "namespace": endpoint.namespace, "slug": endpoint.slug, "description": endpoint.description,
        "sql": endpoint.sql, "parameters": json.loads(endpoint.parameters),
        "execution_mode": endpoint.execution_mode, "max_rows": endpoint.max_rows,
        "export_max_rows": endpoint.export_max_rows, "active": endpoint.active,
        "cache_seconds": endpoint.cache_seconds,
        "columns": json.loads(endpoint.columns) if endpoint.columns is not None else None,
        "created_at": iso(endpoint.created_at), "updated_at": iso(endpoint.updated_at),
    }
