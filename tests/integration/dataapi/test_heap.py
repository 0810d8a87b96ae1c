"""What a process's startup made is set aside from full garbage collections, in the processes that serve one
app (``dataapi api``, ``dataapi worker``), not in a test process that makes many."""

from __future__ import annotations

import gc

import pytest

from api.app import create_app
from dataapi import heap


@pytest.fixture
def unfrozen():
    """Whatever a test froze goes back to the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cycle collector can free it


def test_settle_sets_the_live_heap_aside_and_later_garbage_is_still_collected(unfrozen):
    kept = Node()
    assert heap.settle() > 0
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # a full pass no longer walks it
    later = Node()
    later_id = id(later)
    del later
    gc.collect()
    assert not any(id(o) == later_id and isinstance(o, Node) for o in gc.get_objects())  # made later: freed


async def test_the_served_app_settles_after_startup_and_a_test_app_does_not(settings, engine, unfrozen):
    settings = settings.model_copy(update={"api_query_worker": False})
    async with create_app(settings, engine).router.lifespan_context(None):
        assert gc.get_freeze_count() == 0
    async with create_app(settings, engine, settle_heap=True).router.lifespan_context(None):
        assert gc.get_freeze_count() > 0
