import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from dataapi.data_api.param_values import MAX_STRING, ParamError, coerce, to_bind
from dataapi.data_api.params import (
    DefinitionError,
    ParamSpec,
    ShareContext,
    referenced_params,
    validate_definition,
    validate_share_context,
)


def spec(name="p", ptype="string", **kw) -> ParamSpec:
    return ParamSpec.from_dict({"name": name, "type": ptype, **kw})


def one(ptype: str, value, **kw):
    return coerce([spec(ptype=ptype, **kw)], {"p": value})["p"]


# --- the type matrix ----------------------------------------------------------------------------------

GOOD = [
    ("string", "Sul", "Sul"),
    ("string", "", ""),
    ("string", "Sul' OR 1=1 --", "Sul' OR 1=1 --"),
    ("string", "São Paulo ☃ 🚀 e\u0301 \u202e", "São Paulo ☃ 🚀 e\u0301 \u202e"),
    ("string", "x" * 10_000, "x" * 10_000),
    ("integer", 42, 42),
    ("integer", -7, -7),
    ("integer", 0, 0),
    ("integer", "123", 123),
    ("integer", "-123", -123),
    ("integer", 5.0, 5),
    ("integer", 2**63 - 1, 2**63 - 1),
    ("integer", -(2**63), -(2**63)),
    ("integer", "9223372036854775807", 2**63 - 1),
    ("decimal", 150000.00, "150000.0"),
    ("decimal", "150000.00", "150000.00"),
    ("decimal", 10, "10"),
    ("decimal", "-0.5", "-0.5"),
    ("decimal", ".5", "0.5"),
    ("decimal", "1e3", "1000"),
    ("decimal", 1e-7, "0.0000001"),
    ("decimal", "1" * 38, "1" * 38),
    ("boolean", True, True),
    ("boolean", False, False),
    ("boolean", "true", True),
    ("boolean", "false", False),
    ("date", "2026-01-01", "2026-01-01"),
    ("date", "2024-02-29", "2024-02-29"),
    ("datetime", "2026-01-01T10:30:00", "2026-01-01T10:30:00"),
    ("datetime", "2026-01-01T10:30:00Z", "2026-01-01T10:30:00+00:00"),
    ("datetime", "2026-01-01T10:30:00.123-03:00", "2026-01-01T10:30:00.123000-03:00"),
    ("datetime", "2026-01-01 10:30", "2026-01-01T10:30:00"),
    ("enum", "Sul", "Sul"),
]


@pytest.mark.parametrize(("ptype", "value", "expected"), GOOD)
def test_good_values_are_canonical(ptype, value, expected):
    kw = {"allowed_values": ["Sul", "Norte"]} if ptype == "enum" else {}
    got = one(ptype, value, **kw)
    assert got == expected
    assert type(got) is type(expected)


BAD = [
    ("string", 1, "must be a string"),
    ("string", ["a"], "must be a string"),
    ("string", "x" * 10_001, "at most 10000 characters"),
    ("string", "a\x00b", "NUL"),
    ("string", "\ud800", "valid Unicode"),
    ("integer", True, "must be an integer"),
    ("integer", False, "must be an integer"),
    ("integer", 1.5, "must be an integer"),
    ("integer", float("nan"), "must be an integer"),
    ("integer", float("inf"), "must be an integer"),
    ("integer", "1.0", "must be an integer"),
    ("integer", " 1", "must be an integer"),
    ("integer", "1\n", "must be an integer"),
    ("integer", "+1", "must be an integer"),
    ("integer", "١٢٣", "must be an integer"),  # Arabic-Indic digits: int() would take them
    ("integer", "0x10", "must be an integer"),
    ("integer", "1_000", "must be an integer"),
    ("integer", 2**63, "out of range"),
    ("integer", -(2**63) - 1, "out of range"),
    ("integer", 10**400, "out of range"),
    ("integer", 1e300, "out of range"),
    ("integer", "99999999999999999999", "out of range"),
    ("integer", "9" * 5000, "must be an integer"),
    ("integer", {}, "must be an integer"),
    ("decimal", True, "must be a decimal"),
    ("decimal", float("nan"), "finite"),
    ("decimal", float("inf"), "finite"),
    ("decimal", "NaN", "must be a decimal"),
    ("decimal", "Infinity", "must be a decimal"),
    ("decimal", "-inf", "must be a decimal"),
    ("decimal", "1,5", "must be a decimal"),
    ("decimal", "", "must be a decimal"),
    ("decimal", " 1", "must be a decimal"),
    ("decimal", "1e9999", "out of range"),
    ("decimal", "1e-9999", "out of range"),
    ("decimal", 10**38, "out of range"),
    ("decimal", 1e300, "out of range"),
    ("decimal", "1" * 39, "out of range"),
    ("decimal", "1" * 101, "must be a decimal"),
    ("decimal", [1], "must be a decimal"),
    ("boolean", 1, "must be a boolean"),
    ("boolean", 0, "must be a boolean"),
    ("boolean", "True", "must be a boolean"),
    ("boolean", "yes", "must be a boolean"),
    ("date", "2026-02-30", "must be a date (YYYY-MM-DD)"),
    ("date", "2026-13-01", "must be a date"),
    ("date", "0000-01-01", "must be a date"),
    ("date", "2026-1-1", "must be a date"),
    ("date", "20260101", "must be a date"),
    ("date", "2026-01-01T00:00:00", "must be a date"),
    ("date", "2026-01-01\n", "must be a date"),
    ("date", "２０２６-01-01", "must be a date"),  # full-width digits
    ("date", 20260101, "must be a date"),
    ("datetime", "2026-01-01", "ISO 8601 datetime"),
    ("datetime", "2026-02-30T10:00:00", "ISO 8601 datetime"),
    ("datetime", "2026-01-01T25:00:00", "ISO 8601 datetime"),
    ("datetime", "2026-01-01T10:00:00+25:00", "ISO 8601 datetime"),
    ("datetime", "2026-01-01T10:00:00.1234567", "ISO 8601 datetime"),
    ("datetime", "yesterday", "ISO 8601 datetime"),
    ("datetime", 1767225600, "ISO 8601 datetime"),
    ("enum", "sul", "must be one of: Sul, Norte"),
    ("enum", "Sul ", "must be one of"),
    ("enum", 1, "must be one of"),
]


@pytest.mark.parametrize(("ptype", "value", "message"), BAD)
def test_bad_values_are_refused_naming_the_parameter(ptype, value, message):
    kw = {"allowed_values": ["Sul", "Norte"]} if ptype == "enum" else {}
    with pytest.raises(ParamError) as e:
        coerce([spec("data_inicio", ptype, **kw)], {"data_inicio": value})
    assert e.value.param == "data_inicio"
    assert e.value.message.startswith("Parameter 'data_inicio' ")
    assert message in e.value.message
    assert str(e.value) == e.value.message


def test_the_guide_example_message():
    with pytest.raises(ParamError, match=r"^Parameter 'data_inicio' must be a date \(YYYY-MM-DD\)$"):
        coerce([spec("data_inicio", "date")], {"data_inicio": "01/01/2026"})


# --- presence, null, defaults, unknown ----------------------------------------------------------------

SPECS = [spec("regiao", "string", required=True), spec("limite", "integer", default=10),
         spec("desde", "date")]


def test_defaults_fill_missing_optional_values_and_missing_optionals_are_null():
    assert coerce(SPECS, {"regiao": "Sul"}) == {"regiao": "Sul", "limite": 10, "desde": None}


def test_none_values_means_no_values():
    assert coerce([spec("desde", "date")], None) == {"desde": None}
    with pytest.raises(ParamError, match="'regiao' is required"):
        coerce(SPECS, None)


@pytest.mark.parametrize("values", [[], "x", 1, True, [{"regiao": "Sul"}]])
def test_parameter_values_must_be_an_object(values):
    with pytest.raises(ParamError) as e:
        coerce(SPECS, values)
    assert e.value.param is None
    assert "'parameter_values' must be an object" in e.value.message


def test_missing_required_is_refused():
    with pytest.raises(ParamError) as e:
        coerce(SPECS, {"limite": 5})
    assert e.value.param == "regiao"
    assert e.value.message == "Parameter 'regiao' is required"


def test_null_for_required_is_refused_and_null_for_optional_is_null():
    with pytest.raises(ParamError, match="'regiao' is required and cannot be null"):
        coerce(SPECS, {"regiao": None})
    # An explicit null beats the default: the caller asked for NULL.
    assert coerce(SPECS, {"regiao": "Sul", "limite": None, "desde": None}) == {
        "regiao": "Sul", "limite": None, "desde": None}


def test_required_with_default_takes_the_default_when_absent():
    assert coerce([spec("n", "integer", required=True, default=3)], {}) == {"n": 3}


def test_unknown_parameter_is_refused_by_name():
    with pytest.raises(ParamError) as e:
        coerce(SPECS, {"regiao": "Sul", "regio": "Sul"})
    assert e.value.param == "regio"
    assert e.value.message == "Unknown parameter 'regio'"


def test_no_parameters_declared():
    assert coerce([], {}) == {}
    with pytest.raises(ParamError, match="Unknown parameter 'x'"):
        coerce([], {"x": 1})


def test_results_are_json_safe_and_bind_to_python_values():
    specs = [spec("s"), spec("i", "integer"), spec("d", "decimal"), spec("b", "boolean"), spec("dt", "date"),
             spec("ts", "datetime"), spec("tz", "datetime"), spec("e", "enum", allowed_values=["a"]),
             spec("n", "integer")]
    canonical = coerce(specs, {"s": "x", "i": "7", "d": 1.25, "b": "true", "dt": "2026-03-01",
                               "ts": "2026-03-01T10:00:00", "tz": "2026-03-01T10:00:00Z", "e": "a"})
    assert canonical == {"s": "x", "i": 7, "d": "1.25", "b": True, "dt": "2026-03-01",
                         "ts": "2026-03-01T10:00:00", "tz": "2026-03-01T10:00:00+00:00", "e": "a", "n": None}
    assert all(v is None or type(v) in (str, int, bool) for v in canonical.values())
    assert to_bind(specs, canonical) == {
        "s": "x", "i": 7, "d": Decimal("1.25"), "b": True, "dt": date(2026, 3, 1),
        "ts": datetime(2026, 3, 1, 10), "tz": datetime(2026, 3, 1, 10, tzinfo=UTC), "e": "a", "n": None}
    with pytest.raises(ParamError, match="Unknown parameter 'zz'"):
        to_bind(specs, {"zz": 1})


# --- share contexts -----------------------------------------------------------------------------------

REGION = [spec("regiao", "enum", allowed_values=["Sul", "Norte", "Leste"]), spec("desde", "date"),
          spec("valor", "decimal"), spec("ts", "datetime")]


def share(rules: dict) -> ShareContext:
    ctx = ShareContext.from_dict(rules)
    validate_share_context(ctx, REGION)
    return ctx


def test_pinned_is_applied_when_absent_equal_or_null():
    ctx = share({"regiao": {"pinned": "Sul"}})
    assert coerce(REGION, {}, ctx)["regiao"] == "Sul"
    assert coerce(REGION, {"regiao": "Sul"}, ctx)["regiao"] == "Sul"
    assert coerce(REGION, {"regiao": None}, ctx)["regiao"] == "Sul"


def test_pinned_conflict_is_refused():
    with pytest.raises(ParamError) as e:
        coerce(REGION, {"regiao": "Norte"}, share({"regiao": {"pinned": "Sul"}}))
    assert e.value.param == "regiao"
    assert "not allowed by the share context" in e.value.message


def test_pinned_compares_values_not_spellings():
    assert coerce(REGION, {"valor": "1.50"}, share({"valor": {"pinned": 1.5}}))["valor"] == "1.5"
    ctx = share({"ts": {"pinned": "2026-01-01T12:00:00+02:00"}})
    assert coerce(REGION, {"ts": "2026-01-01T10:00:00Z"}, ctx)["ts"] == "2026-01-01T12:00:00+02:00"
    with pytest.raises(ParamError, match="not allowed"):
        coerce(REGION, {"ts": "2026-01-01T12:00:00"}, ctx)  # naive is not the same instant


def test_allowed_in_and_out():
    ctx = share({"regiao": {"allowed": ["Sul", "Norte"]}, "desde": {"allowed": ["2026-01-01"]}})
    assert coerce(REGION, {"regiao": "Norte", "desde": "2026-01-01"}, ctx)["regiao"] == "Norte"
    with pytest.raises(ParamError, match="'regiao' has a value not allowed by the share context"):
        coerce(REGION, {"regiao": "Leste", "desde": "2026-01-01"}, ctx)
    with pytest.raises(ParamError, match="'desde' has a value not allowed"):
        coerce(REGION, {"regiao": "Sul", "desde": "2026-01-02"}, ctx)


def test_allowed_absent_needs_a_default_inside_the_set():
    ctx = share({"regiao": {"allowed": ["Sul"]}})
    with pytest.raises(ParamError, match="'regiao' needs a value allowed by the share context"):
        coerce(REGION, {}, ctx)
    with pytest.raises(ParamError, match="'regiao' needs a value"):
        coerce(REGION, {"regiao": None}, ctx)
    inside = [spec("regiao", "enum", allowed_values=["Sul", "Norte"], default="Sul")]
    assert coerce(inside, {}, ShareContext.from_dict({"regiao": {"allowed": ["Sul"]}})) == {"regiao": "Sul"}
    outside = [spec("regiao", "enum", allowed_values=["Sul", "Norte"], default="Norte")]
    with pytest.raises(ParamError, match="not allowed by the share context"):
        coerce(outside, {}, ShareContext.from_dict({"regiao": {"allowed": ["Sul"]}}))


def test_empty_allowed_list_allows_nothing():
    with pytest.raises(ParamError, match="not allowed"):
        coerce(REGION, {"regiao": "Sul"}, ShareContext.from_dict({"regiao": {"allowed": []}}))


def test_rules_for_undeclared_parameters_are_ignored_when_coercing():
    # A context bound to every endpoint of the company may name parameters this endpoint lacks.
    ctx = ShareContext.from_dict({"other": {"pinned": "x"}})
    assert coerce([spec("a")], {"a": "y"}, ctx) == {"a": "y"}


def test_share_values_that_do_not_fit_the_type_match_nothing():
    ctx = ShareContext.from_dict({"desde": {"pinned": "not a date"}})
    with pytest.raises(ParamError, match="not allowed"):
        coerce(REGION, {}, ctx)
    ctx = ShareContext.from_dict({"desde": {"allowed": ["nope", "2026-01-01"]}})
    assert coerce(REGION, {"desde": "2026-01-01"}, ctx)["desde"] == "2026-01-01"


@pytest.mark.parametrize(("rules", "message"), [
    ({"nope": {"pinned": "x"}}, "no parameter 'nope'"),
    ({"desde": {"pinned": "2026-02-30"}}, "'desde' must be a date"),
    ({"regiao": {"allowed": ["Sul", "Oeste"]}}, "'regiao' must be one of"),
])
def test_validate_share_context(rules, message):
    with pytest.raises(DefinitionError, match=message):
        validate_share_context(ShareContext.from_dict(rules), REGION)


@pytest.mark.parametrize("rules", [
    [], "x", {"a": "Sul"}, {"a": {}}, {"a": {"pinned": "x", "allowed": ["x"]}}, {"a": {"only": 1}},
    {"a": {"pinned": None}}, {"a": {"pinned": [1]}}, {"a": {"pinned": float("nan")}}, {"a": {"allowed": "x"}},
    {"a": {"allowed": [{"x": 1}]}}, {"A-b": {"pinned": 1}}, {1: {"pinned": 1}},
])
def test_share_context_shape(rules):
    with pytest.raises(DefinitionError):
        ShareContext.from_dict(rules)


def test_share_context_round_trip():
    rules = {"a": {"pinned": "x"}, "b": {"allowed": [1, 2]}}
    assert ShareContext.from_dict(rules).to_dict() == rules
    assert ShareContext.from_dict(ShareContext.from_dict(rules).to_dict()) == ShareContext.from_dict(rules)


# --- definitions --------------------------------------------------------------------------------------

def test_spec_round_trip():
    d = {"name": "regiao", "type": "enum", "required": True, "default": "Sul", "description": "Região",
         "allowed_values": ["Sul", "Norte"]}
    s = ParamSpec.from_dict(d)
    assert s == ParamSpec("regiao", "enum", True, "Sul", "Região", ("Sul", "Norte"))
    assert s.to_dict() == d
    assert ParamSpec.from_dict(s.to_dict()) == s
    assert ParamSpec.from_dict({"name": "x", "type": "date"}).to_dict() == {
        "name": "x", "type": "date", "required": False, "default": None, "description": ""}


def test_string_pattern_must_match_the_whole_value():
    mes = spec("mes", pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    assert coerce([mes], {"mes": "2026-03"}) == {"mes": "2026-03"}
    for bad in ("2026-13", "2026-03\n", "x2026-03", "2026-3"):
        with pytest.raises(ParamError, match=r"Parameter 'mes' must match the pattern"):
            coerce([mes], {"mes": bad})
    unanchored = spec("code", pattern="[A-Z]{2}")
    assert coerce([unanchored], {"code": "AB"}) == {"code": "AB"}
    with pytest.raises(ParamError):
        coerce([unanchored], {"code": "xABx"})
    assert ParamSpec.from_dict(mes.to_dict()) == mes
    assert "pattern" not in spec("x").to_dict()


def test_defaults_are_stored_canonical():
    assert spec(ptype="decimal", default=1.5).default == "1.5"
    assert spec(ptype="datetime", default="2026-01-01T00:00:00Z").default == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(("d", "message"), [
    ("x", "must be an object"),
    ({"type": "string"}, "parameter name"),
    ({"name": "Regiao", "type": "string"}, "parameter name"),
    ({"name": "1a", "type": "string"}, "parameter name"),
    ({"name": "a-b", "type": "string"}, "parameter name"),
    ({"name": "a\n", "type": "string"}, "parameter name"),
    ({"name": "a" * 64, "type": "string"}, "parameter name"),
    ({"name": "a", "type": "text"}, "type must be one of"),
    ({"name": "a"}, "type must be one of"),
    ({"name": "a", "type": "string", "nullable": True}, "unknown field 'nullable'"),
    ({"name": "a", "type": "string", "required": "yes"}, "'required' must be a boolean"),
    ({"name": "a", "type": "string", "description": 1}, "'description'"),
    ({"name": "a", "type": "enum"}, "an enum needs 'allowed_values'"),
    ({"name": "a", "type": "enum", "allowed_values": []}, "an enum needs"),
    ({"name": "a", "type": "enum", "allowed_values": ["x", "x"]}, "an enum needs"),
    ({"name": "a", "type": "enum", "allowed_values": [1]}, "an enum needs"),
    ({"name": "a", "type": "enum", "allowed_values": [["x"]]}, "an enum needs"),
    ({"name": "a", "type": "string", "allowed_values": ["x"]}, "only for enum"),
    ({"name": "a", "type": "integer", "default": "x"}, "default of parameter 'a' must be an integer"),
    ({"name": "a", "type": "date", "default": "2026-02-30"}, "default of parameter 'a' must be a date"),
    ({"name": "a", "type": "enum", "allowed_values": ["x"], "default": "y"}, "must be one of"),
    ({"name": "a", "type": "boolean", "default": 0}, "must be a boolean"),
    ({"name": "a", "type": "integer", "pattern": "^1$"}, "only for string"),
    ({"name": "a", "type": "string", "pattern": "("}, "not a valid regular expression"),
    ({"name": "a", "type": "string", "pattern": 1}, "'pattern' must be a string"),
    ({"name": "a", "type": "string", "pattern": "x" * 501}, "at most 500"),
    ({"name": "a", "type": "string", "pattern": "^x$", "default": "y"}, "must match the pattern"),
])
def test_bad_definitions(d, message):
    with pytest.raises(DefinitionError, match=message):
        ParamSpec.from_dict(d)


def test_referenced_params_ignore_literals_identifiers_and_comments():
    sql = """
        SELECT regiao, '$not_a_param' AS a, 'it''s $also_not' AS b, "$quoted_ident", $$ $dollar $$ AS c,
               $tag$ $tagged $tag$ AS d -- $in_comment
        FROM vendas /* $in_block
        comment */ WHERE regiao = $regiao AND data >= $data_inicio AND ($limite IS NULL OR n < $limite)
    """
    assert referenced_params(sql) == {"regiao", "data_inicio", "limite"}


def test_validate_definition():
    specs = [spec("regiao"), spec("limite", "integer")]
    validate_definition("SELECT * FROM t WHERE r = $regiao", specs)  # declared but unused is fine
    with pytest.raises(DefinitionError, match=r"uses '\$data' but no parameter 'data'"):
        validate_definition("SELECT * FROM t WHERE d = $data", specs)
    with pytest.raises(DefinitionError, match="declared more than once"):
        validate_definition("SELECT 1", [spec("a"), spec("a", "integer")])
    with pytest.raises(DefinitionError, match="positional"):
        validate_definition("SELECT $1", [])


def test_datetime_offsets_survive_the_round_trip():
    canonical = one("datetime", "2026-01-01T10:00:00-03:00")
    assert to_bind([spec(ptype="datetime")], {"p": canonical})["p"].utcoffset() == timedelta(hours=-3)


# --- patterns run on RE2 (linear time), checked for RE2 syntax at save ------------------------------------

def test_a_pathological_pattern_answers_at_once():
    spec = ParamSpec.from_dict({"name": "s", "type": "string", "pattern": "(a+)+$"})
    for value in ["a" * 30 + "!", "a" * (MAX_STRING - 1) + "!"]:  # Python's re: ~30 s for the first already
        started = time.perf_counter()
        with pytest.raises(ParamError, match="must match the pattern"):
            coerce([spec], {"s": value})
        assert time.perf_counter() - started < 0.05
    assert coerce([spec], {"s": "aaaa"}) == {"s": "aaaa"}


@pytest.mark.parametrize("pattern", ["(?=a)a", "(?!a)b", "(?<=a)b", "(?<!a)b", r"(a)\1", "(?P<x>a)(?P=x)", "[",
                                     "(a{1000}){1000}"])
def test_patterns_re2_cannot_run_are_refused_at_save(pattern):
    with pytest.raises(DefinitionError, match=r"parameter 's': 'pattern' is not a valid regular expression in RE2"):
        ParamSpec.from_dict({"name": "s", "type": "string", "pattern": pattern})


def test_a_stored_pattern_re2_cannot_run_refuses_values():
    spec = ParamSpec.from_dict({"name": "s", "type": "string", "pattern": "(?=a)a+", "default": "aa"}, stored=True)
    assert spec.default == "aa"
    with pytest.raises(ParamError, match="'s' cannot be checked: its pattern is not supported"):
        coerce([spec], {"s": "aaa"})
    assert coerce([spec], {}) == {"s": "aa"}


def test_max_length():
    spec = ParamSpec.from_dict({"name": "s", "type": "string", "max_length": 5})
    assert spec.to_dict()["max_length"] == 5
    assert ParamSpec.from_dict(spec.to_dict()) == spec
    assert coerce([spec], {"s": "abcde"}) == {"s": "abcde"}
    with pytest.raises(ParamError, match="'s' must be at most 5 characters"):
        coerce([spec], {"s": "abcdef"})
    with pytest.raises(ParamError, match=f"at most {MAX_STRING} characters"):
        coerce([ParamSpec.from_dict({"name": "s", "type": "string"})], {"s": "x" * (MAX_STRING + 1)})
    for bad in [0, MAX_STRING + 1, "5", True]:
        with pytest.raises(DefinitionError, match="'max_length' must be an integer"):
            ParamSpec.from_dict({"name": "s", "type": "string", "max_length": bad})
    with pytest.raises(DefinitionError, match="only for string"):
        ParamSpec.from_dict({"name": "n", "type": "integer", "max_length": 3})
    assert "max_length" not in ParamSpec.from_dict({"name": "s", "type": "string"}).to_dict()  # old shape kept
