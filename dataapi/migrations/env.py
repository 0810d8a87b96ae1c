"""Alembic environment: runs migrations against the URL set by dataapi.db.alembic_config."""

from alembic import context
from sqlalchemy import pool
from sqlmodel import SQLModel

from dataapi import models  # noqa: F401  (registers the tables on the metadata)
from dataapi.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no sqlalchemy.url: run migrations through dataapi.db.upgrade")
    engine = make_engine(url, poolclass=pool.NullPool)  # one-off connection
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
