"""Parameter values as a caller sends them: coerced to their declared type, held to the share context's
rules, and turned into the Python values DuckDB binds.

Request values are coerced to canonical, JSON-safe forms (dates and datetimes as ISO strings, decimals as
strings) so they can travel through Temporal unchanged; ``to_bind`` turns them into Python values for DuckDB
at the last moment. Coercion is strict: a value that is not clearly of the declared type is refused with a
message naming the parameter, never guessed at. The same coercion checks an admin's defaults and share-context
values when they are saved (``params``).
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

import re2

if TYPE_CHECKING:
    from dataapi.data_api.params import ParamSpec, ShareContext

MAX_STRING = 10_000  # characters of a string value, at most; a parameter's max_length may lower it
MAX_DECIMAL_DIGITS = 38  # DuckDB's widest DECIMAL
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# Used with fullmatch and re.ASCII: `$` alone would accept a trailing newline and `\d` any Unicode digit.
_INT_RE = re.compile(r"-?\d{1,20}", re.ASCII)
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?", re.ASCII)
# Patterns run on caller input, so they run on RE2: linear in the value's length, whatever the pattern (no
# backtracking: "(a+)+$" costs what "a+$" costs). RE2 has no lookarounds or backreferences; such patterns are
# refused when an endpoint is saved.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the admin's answer, not a line on our stderr


class Pattern(Protocol):
    """A compiled RE2 pattern (google-re2 ships no type information)."""

    def fullmatch(self, text: str) -> object: ...


class ParamError(Exception):
    """A request's parameter values are invalid (the caller's mistake: 422). ``param`` names the culprit."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


def coerce(specs: list[ParamSpec], values: Any, share: ShareContext | None = None) -> dict[str, Any]:
    """The request's ``parameter_values`` as canonical values, one per declared parameter (None for NULL).

    Share-context rules for parameters the endpoint does not declare are ignored (a context may cover every
    endpoint of a company). A pinned parameter always takes its pinned value: the caller may omit it or send
    the same value (or null), anything else is refused. A parameter restricted to an allowed list must end up
    with a value in the list: when the caller sends none and the default is not in the list, the request is
    refused rather than run with NULL, which endpoint SQL often reads as "all".
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ParamError(None, "'parameter_values' must be an object")
    names = {s.name for s in specs}
    for name in sorted(values, key=str):
        if name not in names:
            raise ParamError(str(name), f"Unknown parameter '{name}'")
    rules = share.rules if share else {}
    return {spec.name: _resolve(spec, values, rules.get(spec.name, {})) for spec in specs}


def _resolve(spec: ParamSpec, values: dict, rule: dict) -> Any:
    raw = values.get(spec.name)
    value = coerce_value(spec, raw) if raw is not None else None
    if "pinned" in rule:
        pinned = _share_value(spec, rule["pinned"])
        if pinned is None or (value is not None and bind_value(spec, value) != bind_value(spec, pinned)):
            raise _refused(spec)
        return pinned
    if raw is None and spec.name in values and spec.required:
        raise _bad(spec.name, "is required and cannot be null")
    if spec.name not in values:
        value = spec.default
        if value is None and spec.required:
            raise _bad(spec.name, "is required")
    if "allowed" in rule:
        if value is None:
            raise _bad(spec.name, "needs a value allowed by the share context")
        allowed = {bind_value(spec, _share_value(spec, v)) for v in rule["allowed"]}
        if bind_value(spec, value) not in allowed:
            raise _refused(spec)
    return value


def to_bind(specs: list[ParamSpec], canonical: dict) -> dict:
    """Canonical values (from ``coerce``) as the Python values DuckDB binds: date, datetime, Decimal..."""
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(canonical) - set(by_name))
    if unknown:
        raise ParamError(unknown[0], f"Unknown parameter '{unknown[0]}'")
    return {name: bind_value(by_name[name], value) for name, value in canonical.items()}


def bind_value(spec: ParamSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.type == "date":
        return date.fromisoformat(value)
    if spec.type == "datetime":
        return datetime.fromisoformat(value)
    if spec.type == "decimal":
        return Decimal(value)
    return value


def _bad(name: str, what: str) -> ParamError:
    return ParamError(name, f"Parameter '{name}' {what}")


def _refused(spec: ParamSpec) -> ParamError:
    return _bad(spec.name, "has a value not allowed by the share context")


def _share_value(spec: ParamSpec, raw: Any) -> Any:
    """A share context's value in canonical form; None when it does not fit the type (so it matches nothing)."""
    try:
        return coerce_value(spec, raw)
    except ParamError:
        return None


def coerce_value(spec: ParamSpec, raw: Any) -> Any:
    """One non-null value in canonical form, or ParamError."""
    name = spec.name
    match spec.type:
        case "string":
            if not isinstance(raw, str):
                raise _bad(name, "must be a string")
            limit = spec.max_length or MAX_STRING
            if len(raw) > limit:
                raise _bad(name, f"must be at most {limit} characters")
            if "\x00" in raw:
                raise _bad(name, "must not contain NUL characters")
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: not text; DuckDB and orjson would refuse them later
                raise _bad(name, "must be valid Unicode text") from None
            if spec.pattern:
                # RE2, never Python's re: the admin's pattern runs on caller input in linear time.
                compiled = compiled_pattern(spec.pattern)
                if isinstance(compiled, str):  # stored before patterns were RE2: fail closed, never backtrack
                    raise _bad(name, "cannot be checked: its pattern is not supported (RE2 syntax); the "
                                     "endpoint's definition must be updated")
                if not compiled.fullmatch(raw):
                    raise _bad(name, f"must match the pattern {spec.pattern}")
            return raw
        case "integer":
            value = None
            if isinstance(raw, int) and not isinstance(raw, bool):
                value = raw
            elif isinstance(raw, float) and raw.is_integer():  # 5.0 is 5; 5.5, NaN and Infinity are not
                value = int(raw)
            elif isinstance(raw, str) and _INT_RE.fullmatch(raw):
                value = int(raw)
            if value is None:
                raise _bad(name, "must be an integer")
            if not _INT_MIN <= value <= _INT_MAX:
                raise _bad(name, "is out of range (64-bit integer)")
            return value
        case "decimal":
            return _coerce_decimal(name, raw)
        case "boolean":
            if isinstance(raw, bool):
                return raw
            if raw in ("true", "false"):
                return raw == "true"
            raise _bad(name, "must be a boolean (true or false)")
        case "date":
            try:
                if isinstance(raw, str) and _DATE_RE.fullmatch(raw):
                    return date.fromisoformat(raw).isoformat()
            except ValueError:  # well formed but not in the calendar: 2026-02-30
                pass
            raise _bad(name, "must be a date (YYYY-MM-DD)")
        case "datetime":
            try:
                if isinstance(raw, str) and _DATETIME_RE.fullmatch(raw):
                    return datetime.fromisoformat(raw).isoformat()
            except ValueError:
                pass
            raise _bad(name, "must be an ISO 8601 datetime (YYYY-MM-DDTHH:MM:SS, optional offset or Z)")
        case "enum":
            if isinstance(raw, str) and raw in spec.allowed_values:
                return raw
            raise _bad(name, f"must be one of: {', '.join(spec.allowed_values)}")
    raise _bad(name, f"has unknown type {spec.type!r}")


def _coerce_decimal(name: str, raw: Any) -> str:
    """A plain decimal string ("150000.00"); JSON numbers and numeric strings, finite, at most 38 digits."""
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _bad(name, "must be a finite decimal number")
        text = repr(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        if abs(raw) >= 10**MAX_DECIMAL_DIGITS:  # before str(): a huge int is slow to format
            raise _bad(name, f"is out of range (at most {MAX_DECIMAL_DIGITS} digits)")
        text = str(raw)
    elif isinstance(raw, str) and len(raw) <= 100 and _DECIMAL_RE.fullmatch(raw):
        text = raw
    else:
        raise _bad(name, "must be a decimal number")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _bad(name, "must be a decimal number") from None
    # Digits once written out plainly, counted before formatting so "1e9999" never becomes a huge string.
    exponent = int(value.as_tuple().exponent)  # finite: NaN and Infinity were refused above
    if max(value.adjusted() + 1, 1) + max(-exponent, 0) > MAX_DECIMAL_DIGITS:
        raise _bad(name, f"is out of range (at most {MAX_DECIMAL_DIGITS} digits)")
    return format(value, "f")


@functools.lru_cache(maxsize=1024)
def compiled_pattern(pattern: str) -> Pattern | str:
    """The pattern compiled by RE2, or why RE2 refuses it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid"
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (None: it can)."""
    compiled = compiled_pattern(pattern)
    return compiled if isinstance(compiled, str) else None
