"""Per-company DuckDB: the only code that opens a company's database.

- ``versions``: the files of a company under the data directory and the versioned loading that writes them.
- ``databases``: ``CompanyDatabases``, the worker's read side: one hardened connection per company, cached,
  reopened when a load switches versions, running one SELECT per call.
- ``shapes``: what one SQL text needs on a database version (its statements, names and types), worked out once.
- ``serialise``: rows to JSON, in byte-bounded batches, by DuckDB itself or through Python.
- ``errors``: what a query or a load can fail with.

Endpoint SQL is written by the company's own admins but runs in our worker, so every connection it sees is
read-only, may read only the company's ``files/`` folder, cannot load extensions and cannot change settings;
and only a single SELECT statement is accepted (DuckDB would otherwise let COPY and EXPORT write into
``files/``, the one folder it may access), one that calls none of the introspection functions that would tell
the server's paths and settings (``dataapi.data_api.sqlguard``). A result is serialised in byte-bounded batches
and refused (``ResultTooLarge``) as soon as it passes ``max_result_bytes``, so no process holds an oversized one.

The API process imports none of this unless it hosts a query worker: importing the package loads nothing, its
modules load ``duckdb``.
"""
