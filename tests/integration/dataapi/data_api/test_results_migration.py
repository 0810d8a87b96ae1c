"""Migration 0010 (export limits and stored rows) on SQLite and PostgreSQL: the new columns arrive empty on
existing endpoints and jobs, and leave again on downgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from dataapi.db import alembic_config, make_engine, upgrade


def _columns(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_0010_adds_and_removes_the_result_columns(empty_url):
    upgrade(empty_url, "0009")
    engine = make_engine(empty_url)
    try:
        assert "export_max_rows" not in _columns(engine, "endpoints")
        engine.dispose()
        upgrade(empty_url, "0010")
        assert "export_max_rows" in _columns(engine, "endpoints")
        assert {"rows_key", "total_row_count", "rows_truncated"} <= _columns(engine, "jobs")
        engine.dispose()
        command.downgrade(alembic_config(empty_url), "0009")
        assert "export_max_rows" not in _columns(engine, "endpoints")
        assert not {"rows_key", "total_row_count", "rows_truncated"} & _columns(engine, "jobs")
    finally:
        engine.dispose()
