"""Endpoint parameters as an admin declares them: their definitions (``ParamSpec``), the check of an endpoint's
SQL against them, and share contexts (``ShareContext``), all validated when they are saved. What a caller sends
for them is ``param_values``' part.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from dataapi.data_api.param_values import MAX_STRING, ParamError, coerce_value, pattern_problem

TYPES = ("string", "integer", "decimal", "boolean", "date", "datetime", "enum")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SPEC_KEYS = {"name", "type", "required", "default", "description", "allowed_values", "pattern", "max_length"}
MAX_PATTERN = 500

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


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    required: bool = False
    default: Any = None  # canonical form (see param_values.coerce), None when there is none
    description: str = ""
    allowed_values: tuple[str, ...] = ()  # enum only
    pattern: str = ""  # string only: a regular expression (RE2 syntax) the whole value must match
    max_length: int | None = None  # string only: at most this many characters (MAX_STRING when None)

    @classmethod
    def from_dict(cls, d: Any, *, stored: bool = False) -> ParamSpec:
        """Validates a definition. ``stored``: one saved earlier, read back to execute it; a pattern saved
        before patterns were RE2 is kept (values for it are then refused: see ``param_values.coerce_value``)
        rather than making the endpoint unreadable."""
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
                default = coerce_value(spec, default)
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
                coerce_value(spec, value)
            except ParamError as e:
                raise DefinitionError(f"share context: {e.message}") from None


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) and not (isinstance(v, float) and not math.isfinite(v))
