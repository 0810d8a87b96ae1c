"""A repository's code definition, checked and normalised when it is saved (Admin API, CLI) and again before a
run. Pure: it parses, never runs; DuckDB is imported only to parse a SQL repository's statements."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from dataapi.statuses import Runner

CODE_MAX_BYTES = 5 << 20
CODE_MAX_FILES = 1000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RepositoryCodeError(ValueError):
    """A repository's code definition is invalid; the message says what to fix."""


def validate_code(runner: str, code: Any) -> dict:
    """The code checked and normalised: defaults filled in, nothing else kept.

    python: ``{"files": {relative_path: text}, "entry_point": "main.py"}``
    sql: ``{"script": "<statements>", "outputs": [table, ...], "result": "<one SELECT>"}``
    """
    if runner == Runner.PYTHON:
        return _python_code(code)
    if runner == Runner.SQL:
        return _sql_code(code)
    raise RepositoryCodeError(f"unknown runner {runner!r}: use python or sql")


def _python_code(code: dict) -> dict:
    _only_keys(code, {"files", "entry_point"})
    files = code.get("files")
    if not isinstance(files, dict) or not files:
        raise RepositoryCodeError("files must be a non-empty object of {path: text}")
    if len(files) > CODE_MAX_FILES:
        raise RepositoryCodeError(f"at most {CODE_MAX_FILES} files")
    total = 0
    for path, text in files.items():
        _check_path(path)
        if not isinstance(text, str):
            raise RepositoryCodeError(f"file {path!r} must be text")
        total += _utf8_size(text, f"file {path!r}")
    if total > CODE_MAX_BYTES:
        raise RepositoryCodeError(f"the files add up to more than {CODE_MAX_BYTES >> 20} MB")
    folders = {parent.as_posix() for path in files for parent in PurePosixPath(path).parents}
    if clash := sorted(folders.intersection(files)):
        raise RepositoryCodeError(f"{clash[0]!r} cannot be both a file and a folder")
    entry_point = code.get("entry_point", "main.py")
    if not isinstance(entry_point, str) or entry_point not in files:
        raise RepositoryCodeError(f"entry_point {entry_point!r} must be one of the files")
    return {"files": dict(files), "entry_point": entry_point}


def _check_path(path: object) -> None:
    if not isinstance(path, str) or not path:
        raise RepositoryCodeError("file paths must be non-empty strings")
    problem = (
        "must be relative" if path.startswith("/")
        else "must use / between folders, not \\" if "\\" in path
        else "must not contain control characters" if _CONTROL.search(path)
        else "must not contain .." if ".." in path.split("/")
        else "must not have empty or . segments" if {"", "."} & set(path.split("/"))
        else "has a name longer than 255 bytes" if any(len(p.encode()) > 255 for p in path.split("/"))
        else None
    )
    if problem:
        raise RepositoryCodeError(f"file path {path!r} {problem}")


def _sql_code(code: dict) -> dict:
    _only_keys(code, {"script", "outputs", "result"})
    script, outputs, result = code.get("script", ""), code.get("outputs", []), code.get("result")
    if not isinstance(script, str):
        raise RepositoryCodeError("script must be text: DuckDB SQL statements")
    if not isinstance(outputs, list) or not all(isinstance(name, str) for name in outputs):
        raise RepositoryCodeError("outputs must be a list of table names")
    for name in outputs:
        if not _IDENTIFIER.fullmatch(name):
            raise RepositoryCodeError(
                f"output {name!r} is not a valid table name: letters, digits and _, not starting with a digit, "
                "at most 63 characters")
    if len({name.lower() for name in outputs}) < len(outputs):
        raise RepositoryCodeError("outputs name the same table twice")
    if not isinstance(result, str) or not result.strip():
        raise RepositoryCodeError("result is required: a SELECT whose rows make the job's result")
    if _utf8_size(script, "script") + _utf8_size(result, "result") > CODE_MAX_BYTES:
        raise RepositoryCodeError(f"script and result add up to more than {CODE_MAX_BYTES >> 20} MB")
    import duckdb  # here: the API process (which validates) pays for DuckDB only when a SQL repository is saved

    with duckdb.connect(":memory:") as con:  # parsing only: nothing runs here
        try:
            con.extract_statements(script)
        except duckdb.Error as e:
            raise RepositoryCodeError(f"script: {e}") from None
        try:
            statements = con.extract_statements(result)
        except duckdb.Error as e:
            raise RepositoryCodeError(f"result: {e}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise RepositoryCodeError("result must be a single SELECT statement")
    return {"script": script, "outputs": list(outputs), "result": result}


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON lets through
        raise RepositoryCodeError(f"{what} is not valid Unicode text") from None


def _only_keys(code: object, allowed: set[str]) -> None:
    if not isinstance(code, dict):
        raise RepositoryCodeError("code must be a JSON object")
    if unknown := sorted(set(code) - allowed):
        raise RepositoryCodeError(f"unknown code field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
