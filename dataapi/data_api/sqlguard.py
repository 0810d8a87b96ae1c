"""What endpoint SQL may call: DuckDB's introspection functions are refused, at save and at execution.

Endpoint SQL runs on a hardened connection (read-only, one allowed folder, locked configuration), but that
connection can still describe itself: ``current_setting('allowed_directories')``, ``duckdb_databases()``,
``duckdb_settings()``... reveal the server's paths and settings to a tenant. The statement is parsed by
DuckDB itself (``json_serialize_sql``, no binding, no execution) and every function and table it names, at
any depth (subqueries, CTEs, lambdas, window clauses, method-call syntax), is checked against the list below.
What DuckDB cannot serialise (anything but SELECT) is refused too: fail closed.

DuckDB is imported on the first check, not with this module: the API process saves definitions (admin API)
but keeps DuckDB out of its memory unless it hosts a query worker.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import duckdb

# Functions (scalar, table or macro) that describe the server, run SQL given as text, or read files as
# raw text; compared in lower case, whatever schema qualifies them.
DENIED_FUNCTIONS = frozenset({
    "current_setting", "getenv", "which_secret",
    "glob", "read_text", "read_blob",
    "query", "query_table", "json_execute_serialized_sql", "json_deserialize_sql", "json_serialize_sql",
    "json_serialize_plan",
    "pg_get_viewdef", "pg_get_constraintdef", "get_block_size", "format_type",
    "checkpoint", "force_checkpoint",
})
DENIED_PREFIXES = ("duckdb_", "pragma_")  # duckdb_settings(), duckdb_databases(), pragma_database_list...
# Built-in views over those functions (main.duckdb_databases, pg_catalog.pg_settings...).
DENIED_TABLES = frozenset({"pg_settings", "pg_database", "pragma_database_list"})


class SqlNotAllowed(Exception):
    """The SQL names a function or view endpoint SQL may not use. The message is safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


_parser_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None


class _ParseFailed(Exception):
    pass


def _tree(sql: str) -> dict[str, Any]:
    global _parser
    import duckdb

    with _parser_lock:  # one in-memory connection, only ever used to parse
        if _parser is None:
            _parser = duckdb.connect(":memory:")
        try:
            row = _parser.execute("SELECT json_serialize_sql($sql::VARCHAR)", {"sql": sql}).fetchone()
        except duckdb.Error:
            raise _ParseFailed from None
    assert row is not None
    return orjson.loads(row[0])


def _denied_function(name: str) -> bool:
    name = name.lower()
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)


def check(sql: str) -> None:
    """Raises SqlNotAllowed when ``sql`` is not one SELECT or calls a function endpoint SQL may not use."""
    try:
        tree = _tree(sql)
    except _ParseFailed:
        raise SqlNotAllowed("the SQL could not be parsed") from None
    if tree.get("error"):
        if tree.get("error_type") == "parser":
            raise SqlNotAllowed(f"the SQL has a syntax error: {tree.get('error_message', '')}")
        raise SqlNotAllowed("endpoint SQL must be a single SELECT statement")
    if len(tree.get("statements") or ()) != 1:
        raise SqlNotAllowed("endpoint SQL must be a single SELECT statement")
    stack: list = [tree["statements"]]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        name = node.get("function_name")
        if isinstance(name, str) and _denied_function(name):
            raise SqlNotAllowed(f"function {name.lower()} is not allowed in endpoint SQL")
        if node.get("type") == "SHOW_REF":  # DESCRIBE, SHOW, SUMMARIZE: catalog and settings listings
            raise SqlNotAllowed("DESCRIBE, SHOW and SUMMARIZE are not allowed in endpoint SQL")
        if node.get("type") == "BASE_TABLE":
            table = str(node.get("table_name", "")).lower()
            if table in DENIED_TABLES or table.startswith(DENIED_PREFIXES):
                raise SqlNotAllowed(f"view {table} is not allowed in endpoint SQL")
        stack.extend(v for v in node.values() if isinstance(v, dict | list))
