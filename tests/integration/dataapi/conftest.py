"""Fixtures of the core's store tests."""

import pytest

from dataapi.db import make_engine


@pytest.fixture
def store(db_url):
    """An engine on the migrated store of ``db_url`` (SQLite and PostgreSQL); a module may define its own."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
