"""What a caller reads of a DuckDB error: class and message on one line, no SQL excerpt, no server path."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.duck.errors import caller_message


@pytest.mark.parametrize("error, expected", [
    ('Binder Error: Referenced column "valr" not found in FROM clause!\nCandidate bindings: "valor"\n\n'
     "LINE 1: select sum(valr) from vendas\n                   ^^^^",
     'Binder Error: Referenced column "valr" not found in FROM clause! Candidate bindings: "valor"'),
    ('Permission Error: Cannot access file "/etc/passwd" - file system operations are disabled by configuration',
     'Permission Error: Cannot access file "<path>" - file system operations are disabled by configuration'),
    ('IO Error: No files found that match the pattern "/srv/my data/acme/files/x.csv"',
     'IO Error: No files found that match the pattern "<path>"'),
    ("IO Error: Cannot open file /tmp/duckdb_temp_storage-0.tmp: No space left on device",
     "IO Error: Cannot open file <path>: No space left on device"),
    ("IO Error: Could not read C:\\data\\x.csv", "IO Error: Could not read <path>"),
    # Not paths: division, URLs, a relative name the caller wrote
    ("Conversion Error: a/b, x / y, s3://bucket/key, https://h.example/p, 'rel/file.csv'",
     "Conversion Error: a/b, x / y, s3://bucket/key, https://h.example/p, 'rel/file.csv'"),
    ("", "Query execution failed"),
])
def test_caller_message(error, expected):
    assert caller_message(error, Path("/srv/my data")) == expected
