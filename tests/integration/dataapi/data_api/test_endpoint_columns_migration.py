"""Migration 0007 (the endpoints' validated result columns) on SQLite and PostgreSQL, over a store that already
holds endpoints: they keep working, their columns unknown (NULL) until saved again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from dataapi.data_api.definitions import describe_endpoint
from dataapi.data_api.endpoints import find_endpoint
from dataapi.db import alembic_config, make_engine, session_scope, upgrade
from tests.support.old_rows import old_company, old_endpoint


def test_earlier_endpoints_have_unknown_columns(empty_url):
    upgrade(empty_url, "0006")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            company_id = old_company(conn)
            old_endpoint(conn, company_id)
        engine.dispose()
        upgrade(empty_url)
        assert "columns" in {c["name"] for c in inspect(engine).get_columns("endpoints")}
        with session_scope(engine) as s:
            old = find_endpoint(s, company_id, "default", "antigo")
            assert old is not None and describe_endpoint(old)["columns"] is None
            old.columns = '[{"name": "x", "type": "integer", "duckdb_type": "INTEGER"}]'
        with session_scope(engine) as s:
            assert describe_endpoint(find_endpoint(s, company_id, "default", "antigo"))["columns"][0]["name"] == "x"
        engine.dispose()
        command.downgrade(alembic_config(empty_url), "0006")
        assert "columns" not in {c["name"] for c in inspect(engine).get_columns("endpoints")}
        upgrade(empty_url)
    finally:
        engine.dispose()
