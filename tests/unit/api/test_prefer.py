"""RFC 7240 ``Prefer`` as the execute route reads it: ``respond-async`` and ``wait``, capped at the sync limit."""

import pytest

from api.prefer import respond_async_wait


@pytest.mark.parametrize(("values", "wait"), [
    ([], None),
    (["wait=10"], None),  # waiting alone asks for nothing new: the sync answer as always
    (["respond-async"], 0.0),
    (["respond-async, wait=10"], 10.0),
    (["RESPOND-ASYNC", "Wait=2.5"], 2.5),  # names are case-insensitive; the header may repeat
    (["respond-async, wait=600"], 60.0),  # at most the sync limit
    (["respond-async, wait=soon"], 0.0),  # a value not understood is ignored
    (["respond-async, wait=-3"], 0.0),
    (["respond-async; wait=10"], 0.0),  # a parameter of respond-async, not the wait preference
    (['handling=lenient, respond-async, wait="7"'], 7.0),
])
def test_respond_async_wait(values, wait):
    assert respond_async_wait(values, 60.0) == wait
