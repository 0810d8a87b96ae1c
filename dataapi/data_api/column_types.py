"""The column types the Data API names in its results (``columns``) and its catalog, from DuckDB's type names:
one vocabulary for the query path (``activities.duck.serialise``) and validation at save (``validate``)."""

from __future__ import annotations

_TYPE_NAMES = {
    "VARCHAR": "varchar", "ENUM": "varchar",
    "TINYINT": "integer", "SMALLINT": "integer", "INTEGER": "integer", "UTINYINT": "integer",
    "USMALLINT": "integer",
    "UINTEGER": "bigint", "BIGINT": "bigint", "UBIGINT": "bigint", "HUGEINT": "bigint", "UHUGEINT": "bigint",
    "BIGNUM": "bigint", "VARINT": "bigint",
    "DECIMAL": "decimal", "FLOAT": "double", "DOUBLE": "double",
    "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp", "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp", "TIMESTAMP_NS": "timestamp",
    "TIME": "time", "TIME WITH TIME ZONE": "time", "TIME_NS": "time",
    "BOOLEAN": "boolean", "UUID": "uuid", "BLOB": "blob", "JSON": "json",
    "STRUCT": "json", "MAP": "json", "UNION": "json",  # nested values come back as JSON arrays/objects
}


def column_type(duck_type: str) -> str:
    """The column type the Data API names for a DuckDB type."""
    if duck_type.endswith("]"):  # LIST (INTEGER[]) and ARRAY (INTEGER[3])
        return "json"
    base = duck_type.split("(", 1)[0]
    return _TYPE_NAMES.get(base, base.lower())
