"""The ``dataapi`` command and the embedded stack (``dataapi dev``): the process entry points, above every layer.

``cli.main`` builds the parser from one module per command group (``cli.serve``, ``cli.operations``,
``cli.identity``, ``cli.data_api``, ``cli.jobs_api``); ``cli.dev`` runs the stack under ``cli.supervisor``
and creates the demo company (``cli.demo``). Nothing in the product packages imports this package.
"""
