"""Migration 0009 (endpoints.cache_seconds and the result cache's index) on SQLite and PostgreSQL, over a store
that already holds endpoints: they stay uncached (0), and the revision goes down and up again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from dataapi.data_api.definitions import describe_endpoint
from dataapi.data_api.endpoints import find_endpoint
from dataapi.db import alembic_config, make_engine, session_scope, upgrade
from tests.support.old_rows import old_company, old_endpoint


def test_earlier_endpoints_stay_uncached(empty_url):
    upgrade(empty_url, "0008")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            company_id = old_company(conn)
            old_endpoint(conn, company_id)
        engine.dispose()
        upgrade(empty_url, "0009")
        assert "result_cache" in inspect(engine).get_table_names()
        with engine.connect() as conn:  # raw SQL: the models may already have later revisions' columns
            assert conn.execute(text("SELECT cache_seconds FROM endpoints WHERE slug = 'antigo'")).scalar_one() == 0
        engine.dispose()
        command.downgrade(alembic_config(empty_url), "0008")
        inspector = inspect(engine)
        assert "result_cache" not in inspector.get_table_names()
        assert "cache_seconds" not in {c["name"] for c in inspector.get_columns("endpoints")}
        upgrade(empty_url)
        with session_scope(engine) as s:
            old = find_endpoint(s, company_id, "default", "antigo")
            assert old is not None and describe_endpoint(old)["cache_seconds"] == 0
    finally:
        engine.dispose()
