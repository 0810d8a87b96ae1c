"""Endpoint parameters: their definitions, the coercion of request values and share-context restrictions.

Request values are coerced to canonical, JSON-safe forms (dates and datetimes as ISO strings, decimals as
strings) so they can travel through Temporal unchanged; ``to_bind`` turns them into Python values for DuckDB
at the last moment. Coercion is strict: a value that is not clearly of the declared type is refused with a
message naming the parameter, never guessed at.

Kept in one module although it is long: each type's definition check, coercion and share-context check are
read side by side.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import re2

TYPES = ("string", "integer", "decimal", "boolean", "date", "datetime", "enum")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_STRING = 10_000  # characters of a string value, at most; a parameter's max_length may lower it
MAX_DECIMAL_DIGITS = 38  # DuckDB's widest DECIMAL
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# Used with fullmatch and re.ASCII: `$` alone would accept a trailing newline and `\d` any Unicode digit.
_INT_RE = re.compile(r"-?\d{1,20}", re.ASCII)
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?", re.ASCII)
_SPEC_KEYS = {"name", "type", "required", "default", "description", "allowed_values", "pattern", "max_length"}
MAX_PATTERN = 500
# Patterns run on caller input, so they run on RE2: linear in the value's length, whatever the pattern (no
# backtracking: "(a+)+$" costs what "a+$" costs). RE2 has no lookarounds or backreferences; such patterns are
# refused when an endpoint is saved.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the admin's answer, not a line on our stderr

# Literals, quoted identifiers, comments and dollar-quoted strings are matched first so that a `$` inside
# them is not taken for a placeholder; only the last alternative captures a placeholder's name.
_SQL_TOKENS = re.compile(
    r"'(?:[^']|'')*'"
    r'|"(?:[^"]|"")*"'
    r"|--[^\n]*"
    r"|/\*.*?\*/"
    r"|\$\$.*?\$\$"
    r"|\$([A-Za-z_]\w*)\$.*?\$\1\$"
    r"|\$(\w+)",
    re.DOTALL | re.ASCII,
)


class DefinitionError(Exception):
    """An endpoint's parameter definitions or a share context are invalid (the admin's mistake)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ParamError(Exception):
    """A request's parameter values are invalid (the caller's mistake: 422). ``param`` names the culprit."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    required: bool = False
    default: Any = None  # canonical form (see coerce), None when there is none
    description: str = ""
    allowed_values: tuple[str, ...] = ()  # enum only
    pattern: str = ""  # string only: a regular expression (RE2 syntax) the whole value must match
    max_length: int | None = None  # string only: at most this many characters (MAX_STRING when None)

    @classmethod
    def from_dict(cls, d: Any, *, stored: bool = False) -> ParamSpec:
        """Validates a definition. ``stored``: one saved earlier, read back to execute it; a pattern saved
        before patterns were RE2 is kept (values for it are then refused: see ``_coerce_value``) rather than
        making the endpoint unreadable."""
        if not isinstance(d, dict):
            raise DefinitionError("a parameter definition must be an object")
        name = d.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise DefinitionError(f"parameter name {name!r} must match {NAME_RE.pattern}")
        unknown = sorted(set(d) - _SPEC_KEYS)
        if unknown:
            raise DefinitionError(f"parameter '{name}': unknown field {unknown[0]!r}")
        ptype = d.get("type")
        if ptype not in TYPES:
            raise DefinitionError(f"parameter '{name}': type must be one of {', '.join(TYPES)}")
        required = d.get("required", False)
        if not isinstance(required, bool):
            raise DefinitionError(f"parameter '{name}': 'required' must be a boolean")
        description = d.get("description") or ""
        if not isinstance(description, str) or len(description) > 2000:
            raise DefinitionError(f"parameter '{name}': 'description' must be a string of at most 2000 "
                                  "characters")
        allowed = d.get("allowed_values") or []
        if ptype == "enum":
            if (not isinstance(allowed, list | tuple) or not allowed
                    or not all(isinstance(v, str) and v for v in allowed) or len(set(allowed)) != len(allowed)):
                raise DefinitionError(f"parameter '{name}': an enum needs 'allowed_values': distinct, "
                                      "non-empty strings")
        elif allowed:
            raise DefinitionError(f"parameter '{name}': 'allowed_values' is only for enum parameters")
        pattern = d.get("pattern") or ""
        if pattern:
            if ptype != "string":
                raise DefinitionError(f"parameter '{name}': 'pattern' is only for string parameters")
            if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
                raise DefinitionError(f"parameter '{name}': 'pattern' must be a string of at most {MAX_PATTERN} "
                                      "characters")
            problem = pattern_problem(pattern)
            if problem and not stored:
                raise DefinitionError(f"parameter '{name}': 'pattern' is not a valid regular expression in RE2 "
                                      f"syntax ({problem}); lookarounds and backreferences are not supported")
        max_length = d.get("max_length")
        if max_length is not None:
            if ptype != "string":
                raise DefinitionError(f"parameter '{name}': 'max_length' is only for string parameters")
            if not isinstance(max_length, int) or isinstance(max_length, bool) or not 1 <= max_length <= MAX_STRING:
                raise DefinitionError(f"parameter '{name}': 'max_length' must be an integer from 1 to {MAX_STRING}")
        spec = cls(name, ptype, required, None, description, tuple(allowed), pattern, max_length)
        default = d.get("default")
        if default is not None:
            try:
                default = _coerce_value(spec, default)
            except ParamError as e:
                if not (stored and pattern_problem(pattern)):  # a stored default was checked when it was saved
                    raise DefinitionError(f"default of {e.message[0].lower()}{e.message[1:]}") from None
            spec = cls(name, ptype, required, default, description, tuple(allowed), pattern, max_length)
        return spec

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": self.type, "required": self.required, "default": self.default,
             "description": self.description}
        if self.type == "enum":
            d["allowed_values"] = list(self.allowed_values)
        if self.pattern:
            d["pattern"] = self.pattern
        if self.max_length is not None:
            d["max_length"] = self.max_length
        return d


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> object:
    """The pattern compiled by RE2, or why RE2 refuses it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid"
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (None: it can)."""
    compiled = _compiled(pattern)
    return compiled if isinstance(compiled, str) else None


def referenced_params(sql: str) -> set[str]:
    """The `$name` placeholders of the SQL (positional ones like `$1` included, as their digits)."""
    return {m.group(2) for m in _SQL_TOKENS.finditer(sql) if m.group(2)}


def validate_definition(sql: str, specs: list[ParamSpec]) -> None:
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DefinitionError(f"parameter '{duplicates[0]}' is declared more than once")
    for ref in sorted(referenced_params(sql)):
        if ref[0].isdigit():
            raise DefinitionError(f"positional placeholder '${ref}' is not supported; use $name")
        if ref not in names:
            raise DefinitionError(f"the SQL uses '${ref}' but no parameter '{ref}' is declared")


@dataclass(frozen=True)
class ShareContext:
    """What a share context imposes on an endpoint's parameters: {name: {"pinned": v} | {"allowed": [v...]}}.
    A pinned value is applied server-side; an allowed list bounds what the caller may ask for (empty: nothing).
    Values are kept as given (JSON) and compared with the caller's after coercion to the parameter's type."""

    rules: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any) -> ShareContext:
        if not isinstance(d, dict):
            raise DefinitionError("share context rules must be an object {parameter: rule}")
        rules: dict[str, dict] = {}
        for name, rule in d.items():
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise DefinitionError(f"share context: {name!r} is not a parameter name")
            if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in ("pinned", "allowed"):
                raise DefinitionError(f"share context rule for '{name}' must be {{\"pinned\": value}} "
                                      "or {\"allowed\": [values]}")
            if "pinned" in rule:
                if not _is_scalar(rule["pinned"]):
                    raise DefinitionError(f"share context: pinned value of '{name}' must be a string, number "
                                          "or boolean")
                rules[name] = {"pinned": rule["pinned"]}
            else:
                allowed = rule["allowed"]
                if not isinstance(allowed, list) or not all(_is_scalar(v) for v in allowed):
                    raise DefinitionError(f"share context: allowed values of '{name}' must be a list of "
                                          "strings, numbers or booleans")
                rules[name] = {"allowed": list(allowed)}
        return cls(rules)

    def to_dict(self) -> dict:
        return {name: {k: list(v) if isinstance(v, list) else v for k, v in rule.items()}
                for name, rule in self.rules.items()}


def validate_share_context(ctx: ShareContext, specs: list[ParamSpec]) -> None:
    by_name = {s.name: s for s in specs}
    for name, rule in ctx.rules.items():
        spec = by_name.get(name)
        if spec is None:
            raise DefinitionError(f"share context: the endpoint has no parameter '{name}'")
        for value in rule.get("allowed", [rule.get("pinned")]):
            try:
                _coerce_value(spec, value)
            except ParamError as e:
                raise DefinitionError(f"share context: {e.message}") from None


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
    value = _coerce_value(spec, raw) if raw is not None else None
    if "pinned" in rule:
        pinned = _share_value(spec, rule["pinned"])
        if pinned is None or (value is not None and _bind_value(spec, value) != _bind_value(spec, pinned)):
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
        allowed = {_bind_value(spec, _share_value(spec, v)) for v in rule["allowed"]}
        if _bind_value(spec, value) not in allowed:
            raise _refused(spec)
    return value


def to_bind(specs: list[ParamSpec], canonical: dict) -> dict:
    """Canonical values (from ``coerce``) as the Python values DuckDB binds: date, datetime, Decimal..."""
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(canonical) - set(by_name))
    if unknown:
        raise ParamError(unknown[0], f"Unknown parameter '{unknown[0]}'")
    return {name: _bind_value(by_name[name], value) for name, value in canonical.items()}


def _bind_value(spec: ParamSpec, value: Any) -> Any:
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


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) and not (isinstance(v, float) and not math.isfinite(v))


def _share_value(spec: ParamSpec, raw: Any) -> Any:
    """A share context's value in canonical form; None when it does not fit the type (so it matches nothing)."""
    try:
        return _coerce_value(spec, raw)
    except ParamError:
        return None


def _coerce_value(spec: ParamSpec, raw: Any) -> Any:
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
                compiled = _compiled(spec.pattern)
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
