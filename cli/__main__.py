"""``python -m cli``: the ``dataapi`` command, as ``dataapi dev`` starts its children."""

from cli.main import run

run()
