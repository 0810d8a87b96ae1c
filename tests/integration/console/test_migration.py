"""Migration 0008 (human users' passwords and invitations, console sessions) on SQLite and PostgreSQL: the store it
makes matches the models, existing users keep working without a password, and it downgrades cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from dataapi.db import alembic_config, make_engine, upgrade
from tests.support.old_rows import old_company

OURS = {"users", "console_sessions"}


def _diff_on_our_tables(engine) -> list:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    flat = [d for group in diff for d in (group if isinstance(group, list) else [group])]

    def table_of(d) -> str | None:
        for part in d[1:]:
            name = getattr(part, "name", None) if not isinstance(part, str) else None
            table = getattr(part, "table", None)
            if table is not None:
                return table.name
            if name in OURS:
                return name
        return d[2] if len(d) > 2 and isinstance(d[2], str) else None

    return [d for d in flat if table_of(d) in OURS]


def test_upgrade_matches_the_models_and_downgrades(empty_url):
    upgrade(empty_url, "0007")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            cid = old_company(conn)
            conn.execute(text("INSERT INTO users (company_id, name, kind, disabled, created_at) VALUES "
                              "(:c, 'ana', 'human', false, CURRENT_TIMESTAMP)"), {"c": cid})
        engine.dispose()
        upgrade(empty_url, "0008")
        assert "console_sessions" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT password_hash FROM users WHERE name = 'ana'")).scalar_one() is None
        upgrade(empty_url)
        assert _diff_on_our_tables(engine) == []
        engine.dispose()
        command.downgrade(alembic_config(empty_url), "0007")
        assert "console_sessions" not in inspect(engine).get_table_names()
        assert "password_hash" not in {c["name"] for c in inspect(engine).get_columns("users")}
        upgrade(empty_url)
    finally:
        engine.dispose()
