"""Format and content-coding negotiation of results, and ``export_max_rows`` in endpoint definitions."""

from __future__ import annotations

import pytest

from dataapi.data_api.definitions import parse_definition
from dataapi.data_api.params import DefinitionError
from dataapi.data_api.results import Format, NotAcceptable, negotiate_encoding, negotiate_format, parse_page
from dataapi.errors import DomainError


@pytest.mark.parametrize(("accept", "param", "expected"), [
    (None, None, Format.JSON), ("", None, Format.JSON), ("*/*", None, Format.JSON),
    ("application/json", None, Format.JSON), ("text/csv", None, Format.CSV), ("text/*", None, Format.CSV),
    ("application/x-ndjson", None, Format.NDJSON), ("application/vnd.apache.parquet", None, Format.PARQUET),
    ("application/vnd.apache.arrow.stream", None, Format.ARROW),
    ("text/csv;q=0.2, application/x-ndjson;q=0.9", None, Format.NDJSON),
    ("*/*;q=0.9, text/csv", None, Format.CSV),  # the exact type outweighs the wildcard
    ("text/html,application/xhtml+xml,*/*;q=0.8", None, Format.JSON),  # a browser
    ("text/csv", "parquet", Format.PARQUET), ("application/xml", "CSV", Format.CSV),  # ?format= wins
])
def test_format(accept, param, expected):
    assert negotiate_format(accept, param) == expected


@pytest.mark.parametrize(("accept", "param"), [("application/xml", None), ("text/csv;q=0", None),
                                               (None, "xlsx"), ("*/*", "")])
def test_not_acceptable(accept, param):
    with pytest.raises(NotAcceptable) as e:
        negotiate_format(accept, param)
    assert e.value.status == 406 and "application/vnd.apache.parquet" in e.value.message


@pytest.mark.parametrize(("header", "fmt", "expected"), [
    (None, Format.JSON, None), ("identity", Format.JSON, None), ("gzip", Format.CSV, "gzip"),
    ("gzip, deflate, br, zstd", Format.NDJSON, "zstd"), ("zstd;q=0.1, gzip", Format.JSON, "gzip"),
    ("*", Format.JSON, "zstd"), ("gzip;q=0", Format.JSON, None), ("gzip, zstd", Format.PARQUET, None),
    ("gzip", Format.ARROW, None), ("br", Format.JSON, None),
])
def test_encoding(header, fmt, expected):
    assert negotiate_encoding(header, fmt) == expected


def test_page_parameters():
    assert parse_page(None, None) == (0, None)
    assert parse_page("10", "5") == (10, 5)
    for offset, limit in (("-1", None), ("x", None), (None, "0"), (None, "1.5"), ("²", None), ("9" * 5000, None)):
        with pytest.raises(DomainError) as e:
            parse_page(offset, limit)
        assert e.value.status == 400 and e.value.code == "INVALID_PARAMS"


def test_export_max_rows_in_definitions():
    base = {"slug": "x", "sql": "SELECT 1 AS n", "max_rows": 100}
    assert parse_definition(base, 100, 1000).export_max_rows is None
    d = parse_definition({**base, "execution_mode": "async", "export_max_rows": 5000}, 100, 1000, 10_000)
    assert d.export_max_rows == 5000
    for bad in ({"export_max_rows": 5000},  # a sync endpoint
                {"execution_mode": "async", "export_max_rows": 50},  # below max_rows
                {"execution_mode": "async", "export_max_rows": 20_000},  # above the cap
                {"execution_mode": "async", "export_max_rows": True}):
        with pytest.raises(DefinitionError):
            parse_definition({**base, **bad}, 100, 1000, 10_000)
