"""Rows written with plain SQL into a store at an earlier revision, before a migration test upgrades it: only the
columns every revision since 0002 has, so that the rows are what an older version of the product wrote."""

from __future__ import annotations

from sqlalchemy import Connection, text


def old_company(conn: Connection, slug: str = "acme") -> int:
    conn.execute(text("INSERT INTO companies (slug, name, created_at) VALUES (:s, :s, CURRENT_TIMESTAMP)"),
                 {"s": slug})
    return conn.execute(text("SELECT id FROM companies WHERE slug = :s"), {"s": slug}).scalar_one()


def old_endpoint(conn: Connection, company_id: int, slug: str = "antigo") -> None:
    """A sync endpoint ``default/<slug>`` answering ``SELECT 1 AS x``, at most 10 rows."""
    conn.execute(text("INSERT INTO endpoints (company_id, namespace, slug, description, sql, parameters, "
                      "execution_mode, max_rows, active, created_at, updated_at) VALUES (:c, 'default', :s, '', "
                      "'SELECT 1 AS x', '[]', 'sync', 10, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                 {"c": company_id, "s": slug})
