"""The parameter schemas of a company's document (``api.schemas.company``) never promise what the server refuses:
any value the schema of a parameter accepts, ``param_values.coerce`` accepts too (hypothesis, over every type and
the values the fuzz tests send)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators

from api.schemas.company import parameter_schema, parameters_schema, row_schema
from dataapi.data_api.param_values import ParamError, coerce
from dataapi.data_api.params import ParamSpec
from tests.integration.test_fuzz import ANY, FITTING, spec_sets


def _catalog(spec: ParamSpec) -> dict:
    """The spec as the catalog shows it (``catalog._parameter``, no share context)."""
    return {**spec.to_dict(), "fixed": False}


def _ecma_pattern(validator, pattern: str, instance: object, schema: dict):
    """``pattern`` as ECMA-262 (and RE2) read it: ``\\d`` and ``\\w`` are ASCII, where Python's re takes any
    Unicode digit or letter."""
    if isinstance(instance, str) and not re.search(pattern, instance, re.ASCII):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def _unicode(value: object) -> bool:
    try:
        str(value).encode()
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_sets(), st.data())
def test_what_a_parameter_schema_accepts_the_server_accepts(specs, data):
    schema = parameters_schema([_catalog(s) for s in specs])
    validator = EcmaValidator(schema)
    # A string with a lone surrogate is no Unicode text: no JSON encoder of a client makes one (RFC 7493), and the
    # server refuses it (422) where a schema cannot say so.
    values = {s.name: data.draw((FITTING[s.type] | ANY[s.type]).filter(_unicode))
              for s in specs if data.draw(st.booleans())}
    if not validator.is_valid(values):
        event("refused by the schema")
        return
    event("accepted by the schema")
    try:
        coerce(specs, values)
    except ParamError as e:
        raise AssertionError(f"{values} fits {schema} but the server says: {e.message}") from None


def test_each_type_is_declared_with_its_constraints():
    def schema(**d) -> dict:
        return parameter_schema(_catalog(ParamSpec.from_dict(d)))

    assert schema(name="n", type="integer", required=True) == {
        "type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    assert schema(name="s", type="string", pattern=r"\d{3}", max_length=5) == {
        "type": ["string", "null"], "maxLength": 5, "pattern": r"^(?:\d{3})$",
        "not": {"type": "string", "pattern": r"\x00"}}
    assert schema(name="e", type="enum", allowed_values=["a", "b"], default="a") == {
        "anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}], "default": "a"}
    valid = Draft202012Validator(schema(name="d", type="date", required=True)).is_valid
    assert valid("2024-02-29") and not valid("2026-02-29") and not valid("2026-13-01")


def test_rows_are_typed_from_the_columns():
    row = row_schema([{"name": "n", "type": "bigint", "duckdb_type": "BIGINT"},
                      {"name": "h", "type": "bigint", "duckdb_type": "HUGEINT"},
                      {"name": "v", "type": "decimal", "duckdb_type": "DECIMAL(18,2)"},
                      {"name": "j", "type": "json", "duckdb_type": "INTEGER[]"}])
    props = row["properties"]
    assert props["n"]["type"] == ["integer", "null"] and props["h"]["type"] == ["integer", "string", "null"]
    assert props["v"]["type"] == ["number", "null"] and "type" not in props["j"]
    assert row["required"] == ["n", "h", "v", "j"] and row["additionalProperties"] is False
    assert row_schema(None) == {"type": "object", "description": row_schema(None)["description"]}
