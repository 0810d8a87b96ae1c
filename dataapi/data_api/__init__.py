"""The Data API domain: visualization endpoints, their parameters and share contexts, and execution jobs.

``definitions`` validates an endpoint definition, ``endpoints`` and ``share_contexts`` hold their queries,
``jobs`` the execution job record, ``service`` the rules both the HTTP API and the CLI call (preparing an
execution, reading a job), ``statements`` the prebuilt statements every execution runs, ``params`` and
``sqlguard`` the checks of parameter values and endpoint SQL. The sync fast lane is ``dataapi.sync``."""
