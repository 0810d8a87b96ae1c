"""The Jobs API domain: repositories of analytics code, the jobs that run them and their uploaded inputs.

``code`` checks a repository's code definition, ``repositories`` and ``jobs`` hold their queries, ``uploads``
checks and stores job inputs, ``service`` the rules both the HTTP API and the CLI call."""
