"""Fuzzing: parameter coercion (hypothesis), every operation of the OpenAPI document (schemathesis over ASGI,
with real credentials), and the upload parsers (random bytes, and valid files mutated)."""

from __future__ import annotations

import asyncio
import io
import math
import re
import struct
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import openpyxl
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api.app import create_app
from dataapi.data_api.param_values import ParamError, coerce, to_bind
from dataapi.data_api.params import TYPES, DefinitionError, ParamSpec, ShareContext
from dataapi.data_api.share_contexts import create_share_context
from dataapi.db import make_engine, session_scope
from dataapi.identity import service as identity
from dataapi.identity.ratelimit import FailureLimiter
from dataapi.jobs_api import repositories
from dataapi.jobs_api.uploads import UploadError, accept_upload
from tests.support.data_api import Tenant, execute
from tests.support.jobs_api import FAILING_PY, Org
from worker import build_query_worker

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --- parameters: dataapi.data_api.param_values.coerce -----------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=3), max_leaves=8)
_OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_DATETIMES = st.datetimes(timezones=st.none() | st.just(UTC) | _OFFSETS)
ENUM_VALUES = ("Norte", "Sul", "Centro-Oeste")
PATTERNS = ("", "[A-Z][a-z]+", r"\d{3}", ".*")


def _scalar(v) -> bool:
    return isinstance(v, str | int | float | bool) and not (isinstance(v, float) and not math.isfinite(v))


# Per type: values that fit (in the type's canonical spelling), and values in every spelling, fitting or nearly.
FITTING = {
    "string": st.sampled_from(["Sul", "Norte", "123", "ABC"])
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
    "integer": st.integers(-(2**63), 2**63 - 1),
    "decimal": st.decimals(-(10**20), 10**20, allow_nan=False, allow_infinity=False, places=4).map(str),
    "boolean": st.booleans(),
    "date": st.dates().map(date.isoformat),
    "datetime": _DATETIMES.map(datetime.isoformat),
    "enum": st.sampled_from(ENUM_VALUES),
}
TYPED = {
    "string": FITTING["string"] | st.sampled_from(["", "a\x00b", "\ud800", "x" * 10_001]),
    "integer": (st.integers(-(2**70), 2**70) | st.floats() | st.from_regex(r"-?\d{1,22}", fullmatch=True)
                | st.sampled_from(["1\n", "١٢", "+5", "5.0", True])),
    "decimal": (FITTING["decimal"] | st.floats() | st.integers(-(10**40), 10**40)
                | st.from_regex(r"[+-]?\d{0,5}\.?\d{0,5}([eE][+-]?\d{1,4})?", fullmatch=True)
                | st.sampled_from(["NaN", "Infinity", "1e9999", "1e-9999", "1_000", " 1"])),
    "boolean": st.booleans() | st.sampled_from(["true", "false", "True", "1", 0, 1.0]),
    "date": FITTING["date"] | st.from_regex(r"\d{4}-\d{2}-\d{2}", fullmatch=True) | st.sampled_from(["2026-1-1"]),
    "datetime": (FITTING["datetime"] | _DATETIMES.map(lambda d: d.isoformat(" ", "minutes"))
                 | st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?", fullmatch=True)),
    "enum": FITTING["enum"] | st.text(max_size=10),
}
ANY = {ptype: TYPED[ptype] | JSON for ptype in TYPES}
SCALAR = {ptype: (TYPED[ptype] | SCALARS).filter(_scalar) for ptype in TYPES}


@st.composite
def spec_sets(draw) -> list[ParamSpec]:
    specs = []
    for name in draw(st.lists(st.sampled_from(["a", "b", "regiao", "d_1"]), min_size=1, max_size=4, unique=True)):
        ptype = draw(st.sampled_from(TYPES))
        d = {"name": name, "type": ptype, "required": draw(st.booleans())}
        if ptype == "enum":
            d["allowed_values"] = list(ENUM_VALUES)
        if ptype == "string":
            d["pattern"] = draw(st.sampled_from(PATTERNS))
        if draw(st.booleans()):
            d["default"] = draw(TYPED[ptype])
        try:
            specs.append(ParamSpec.from_dict(d))
        except DefinitionError:  # a default that does not fit: the admin API refuses it, so does this
            specs.append(ParamSpec.from_dict({k: v for k, v in d.items() if k != "default"}))
    return specs


@st.composite
def share_contexts(draw, specs: list[ParamSpec]) -> ShareContext | None:
    if draw(st.booleans()):
        return None
    rules = {}
    for spec in specs + [ParamSpec("other", "string")]:  # a rule for a parameter the endpoint lacks is ignored
        scalar = SCALAR[spec.type]
        kind = draw(st.sampled_from(["none", "pinned", "allowed"]))
        if kind == "pinned":
            rules[spec.name] = {"pinned": draw(scalar)}
        elif kind == "allowed":
            rules[spec.name] = {"allowed": draw(st.lists(scalar, max_size=3))}
    return ShareContext.from_dict(rules)


@st.composite
def param_requests(draw):
    specs = draw(spec_sets())
    share = draw(share_contexts(specs))
    by_name = {s.name: s for s in specs}
    values = {n: draw(FITTING[s.type] | ANY[s.type]) for n, s in by_name.items() if draw(st.integers(0, 3))}
    match draw(st.integers(0, 9)):
        case 0:
            values = draw(JSON)  # not an object at all, or any object
        case 1:
            values["unknown"] = draw(JSON)
    return specs, values, share


_BOUND_TYPES = {"string": str, "integer": int, "decimal": Decimal, "boolean": bool, "date": date,
                "datetime": datetime, "enum": str}


def _canonical(spec: ParamSpec, raw):
    """``raw`` as the parameter's canonical value, or None when it does not fit."""
    try:
        return coerce([spec], {spec.name: raw})[spec.name]
    except ParamError:
        return None


def _bound(spec: ParamSpec, canonical):
    return to_bind([spec], {spec.name: canonical})[spec.name]


def _allowed(spec: ParamSpec, rule: dict) -> list:
    return [_bound(spec, c) for c in (_canonical(spec, v) for v in rule["allowed"]) if c is not None]


@FUZZ
@given(param_requests())
def test_coerce_refuses_with_param_error_or_returns_canonical_values(request):
    specs, values, share = request
    try:
        out = coerce(specs, values, share)
    except ParamError as e:
        event("refused")
        assert e.message and (e.param is None or e.param in e.message)
        return
    event("accepted")
    assert list(out) == [s.name for s in specs]
    # Canonical values are JSON (they travel through Temporal as they are) and a fixed point of coerce.
    assert orjson.loads(orjson.dumps(out)) == out
    assert coerce(specs, out, share) == out
    bound = to_bind(specs, out)
    for spec in specs:
        value = bound[spec.name]
        rule = share.rules.get(spec.name, {}) if share else {}
        if value is None:
            assert not spec.required and not rule
            continue
        assert type(value) is _BOUND_TYPES[spec.type], (spec, value)
        assert spec.type != "enum" or value in spec.allowed_values
        assert not spec.pattern or re.fullmatch(spec.pattern, value)
        # The share context held: nothing but the pinned value, nothing outside the allowed set.
        if "pinned" in rule:
            assert out[spec.name] == _canonical(spec, rule["pinned"])
        if "allowed" in rule:
            assert value in _allowed(spec, rule)


@FUZZ
@given(spec_sets(), st.data())
def test_values_of_the_declared_type_are_accepted_and_bind_to_what_was_sent(specs, data):
    values = {s.name: data.draw(FITTING[s.type].filter(lambda v, s=s: not s.pattern or re.fullmatch(s.pattern, v)))
              for s in specs}
    out = coerce(specs, values)
    assert orjson.loads(orjson.dumps(out)) == out and coerce(specs, out) == out
    bound = to_bind(specs, out)
    for spec in specs:
        parse = {"decimal": Decimal, "date": date.fromisoformat, "datetime": datetime.fromisoformat}.get(spec.type)
        sent = values[spec.name]
        assert bound[spec.name] == (parse(sent) if parse else sent), spec
        assert type(bound[spec.name]) is _BOUND_TYPES[spec.type]


@FUZZ
@given(spec_sets(), st.data())
def test_a_pinned_parameter_takes_its_pinned_value_or_is_refused(specs, data):
    spec = specs[0]
    pinned = data.draw(FITTING[spec.type].filter(lambda v: _canonical(spec, v) is not None))
    sent = data.draw(st.none() | ANY[spec.type])
    share = ShareContext.from_dict({spec.name: {"pinned": pinned}})
    same = sent is None or (_canonical(spec, sent) is not None
                            and _bound(spec, _canonical(spec, sent)) == _bound(spec, _canonical(spec, pinned)))
    try:
        out = coerce([spec], {spec.name: sent}, share)
    except ParamError:
        event("refused")
        assert not same  # refused exactly when the caller asks for something else
        return
    event("accepted")
    assert same and out == {spec.name: _canonical(spec, pinned)}


@FUZZ
@given(spec_sets(), st.data())
def test_an_allowed_set_bounds_what_the_caller_gets(specs, data):
    spec = specs[0]
    rule = {"allowed": data.draw(st.lists(FITTING[spec.type] | SCALAR[spec.type], min_size=1, max_size=3))}
    share = ShareContext.from_dict({spec.name: rule})
    sent = data.draw(st.sampled_from(rule["allowed"]) | ANY[spec.type] | st.none())
    values = {} if sent is None and data.draw(st.booleans()) else {spec.name: sent}
    try:
        out = coerce([spec], values, share)
    except ParamError:
        event("refused")
        # Never an over-refusal: a value that fits and is allowed goes through.
        fits = sent is not None and _canonical(spec, sent) is not None
        assert not (fits and _bound(spec, _canonical(spec, sent)) in _allowed(spec, rule))
        return
    event("accepted")
    assert out[spec.name] is not None and _bound(spec, out[spec.name]) in _allowed(spec, rule)


# --- uploads: dataapi.jobs_api.uploads.accept_upload----------------------------------------------------

UPLOAD_BOUND = 3.0  # seconds one upload of a few KiB may take to be accepted or refused
NAMES = st.sampled_from(["input.zip", "dados.csv", "x.json", "book.xlsx", "noext", "../../etc/passwd", "a.zip.csv"])


def _xlsx() -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(["regiao", "valor"])
    wb.active.append(["Sul", 10])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _zip(*entries: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()


_CSV, _JSON, _XLSX = b"regiao,valor\nSul,10\nNorte,20\n", b'{"a": [1, 2.5, "x"], "b": {"c": null}}', _xlsx()
SEEDS = {"csv": _CSV, "json": _JSON, "xlsx": _XLSX,
         "zip": _zip(("vendas.csv", _CSV), ("meta/info.json", _JSON), ("book.xlsx", _XLSX)),
         "zip-stored": _zip(("a.csv", _CSV))}
# ZIP records and the length of their fixed part: mutations aimed inside them reach the parser's field checks.
_RECORDS = {b"PK\x03\x04": 30, b"PK\x01\x02": 46, b"PK\x05\x06": 22, b"PK\x06\x06": 56}


def _record_offsets(data: bytes) -> list[int]:
    offsets = []
    for magic, size in _RECORDS.items():
        at = data.find(magic)
        while at >= 0:
            offsets.extend(range(at + 4, min(at + size, len(data))))
            at = data.find(magic, at + 1)
    return offsets


MUTATION = st.tuples(st.sampled_from(["flip", "set", "field", "insert", "delete", "truncate", "repeat"]),
                     st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))


def mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, where, payload in mutations:
        if not out:
            break
        at = where % len(out)
        if kind == "field" and (fields := _record_offsets(bytes(out))):  # a header field of a ZIP record
            at = fields[where % len(fields)]
            out[at:at + len(payload)] = payload[: len(out) - at]
        elif kind == "flip":
            out[at] ^= 1 << (payload[0] % 8)
        elif kind == "set":
            out[at:at + len(payload)] = payload
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "delete":
            del out[at:at + payload[0]]
        elif kind == "truncate":
            del out[at:]
        elif kind == "repeat":  # a slice copied over itself: duplicated headers, overlapping entries
            out[at:at] = out[at:at + payload[0] * 8]
    return bytes(out)


def _accept(data: bytes, name: str) -> None:
    """accept_upload must accept the bytes or refuse them with UploadError, and quickly."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        started = time.monotonic()
        try:
            names = accept_upload(path, name, Path(tmp) / "inputs")
        except UploadError as e:
            event("refused")
            assert str(e) and tmp not in str(e)  # a message for the caller, never a server path
        else:
            event("accepted")
            assert names and all((Path(tmp) / "inputs" / n).is_file() for n in names)
        elapsed = time.monotonic() - started
        assert elapsed < UPLOAD_BOUND, f"{elapsed:.1f}s for {len(data)} bytes"


PREFIXES = st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"{", b"[", b"\xef\xbb\xbf", b"\xff\xfe", b"id,name\n"])


@FUZZ
@given(PREFIXES, st.binary(max_size=2048), NAMES)
def test_random_bytes_are_accepted_or_refused_with_upload_error(prefix, data, name):
    _accept(prefix + data, name)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.lists(MUTATION, min_size=1, max_size=4), NAMES)
def test_mutated_valid_files_are_accepted_or_refused_with_upload_error(seed, mutations, name):
    _accept(mutate(SEEDS[seed], mutations), name)


def test_the_seeds_are_accepted():
    for seed, data in SEEDS.items():
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "upload").write_bytes(data)
            assert accept_upload(Path(tmp) / "upload", f"seed.{seed.split('-')[0]}", Path(tmp) / "inputs"), seed


def _broken_zip(kind: str) -> bytes:
    """A ZIP of one CSV with one header field set to what zipfile cannot take (each once escaped as a 500)."""
    data = bytearray(_zip(("a.csv", _CSV)))
    central, end = data.find(b"PK\x01\x02"), data.rfind(b"PK\x05\x06")
    if kind == "patched-data flag":
        data[central + 8] |= 0x20  # general purpose flags, bit 5
    elif kind == "future ZIP version":
        data[central + 6] = 119  # version needed to extract: 11.9
    elif kind == "local name not UTF-8":
        data[7] |= 0x08  # the local header's UTF-8 flag (bit 11)...
        data[30] = 0xFF  # ...on a name that is not UTF-8
    elif kind == "header offset before the file":  # the directory said to start later: entries move before byte 0
        struct.pack_into("<L", data, end + 16, struct.unpack_from("<L", data, end + 16)[0] + 100)
    return bytes(data)


@pytest.mark.parametrize("kind", ["patched-data flag", "future ZIP version", "local name not UTF-8",
                                  "header offset before the file"])
def test_zipfile_errors_are_upload_errors(kind, tmp_path):
    (tmp_path / "upload").write_bytes(_broken_zip(kind))
    with pytest.raises(UploadError):
        accept_upload(tmp_path / "upload", "input.zip", tmp_path / "inputs")


# --- the HTTP API: every operation of the OpenAPI document, through schemathesis -------------------------

API_EXAMPLES = 25  # per operation
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
          response_headers_conformance, allow_header_conformance, negative_data_rejection, missing_required_header,
          unsupported_method]
# Bearer routes must refuse a request without its token. (The Jobs API answers a missing header 400 "Missing
# x-api-key", as its reference says, which this check would count as ignored authentication.)
BEARER_CHECKS = [ignored_auth]


@pytest.fixture
async def fuzz_world(stack_settings, temporal_env):
    """The app with a query worker, a company with data and endpoints (and an admin's token), a Jobs API company
    (and its identity headers), and real ids of their objects for the fuzzer to aim at now and then."""
    settings = stack_settings.model_copy(update={
        "task_queue_jobs": f"jobs-{uuid.uuid4().hex[:8]}",
        "api_query_worker": False})  # schemathesis starts the app's lifespan: the test runs the worker itself
    engine = make_engine(settings.resolved_database_url)
    app = create_app(settings, engine, temporal_env.client)
    ctx = app.state.ctx
    ctx.limiter = FailureLimiter(10**6, 60)  # the fuzzed logins must not lock the real credentials out
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as api, \
            build_query_worker(temporal_env.client, settings):
        tenant = Tenant(app, api)
        token = await tenant.token(("CompanyAdmin",))
        user, key, _ = tenant.user()
        org = Org(app, api, policies=("CompanyAdmin",))
        with session_scope(ctx.engine) as s:
            company = identity.get_company(s, tenant.slug)
            context = create_share_context(s, company, {"regiao": {"allowed": ["Sul"]}}, user_name=user)
            repo, _ = repositories.upsert_repository(s, company.id,
                                                     {"name": "R", "runner": "python", "code": FAILING_PY})
            context_id, repo_id = str(context.id), repo.repo_id
        r = await execute(api, token, "default/relatorio-mensal", {"mes": "2026-03"})
        assert r.status_code == 202, r.text
        job = await org.submit(params={"a": 1})  # no job worker: it stays processing
        assert job.status_code == 201, job.text
        yield {
            "app": app, "bearer": {"Authorization": f"Bearer {token}"}, "jobs": org.headers(),
            "paths": [{"namespace": "default", "slug": slug, "job_id": r.json()["job_id"], "context_id": context_id,
                       "name": user, "key_id": key, "repo_id": repo_id}
                      for slug in ("relatorio-mensal", "vendas-por-regiao")],
            "good_body": {"parameter_values": {"data_inicio": "2026-01-01", "regiao": "Sul"}},
            "jobs_path": [{"job_id": job.json()["job_id"]}],
        }
    engine.dispose()


def _fuzz(world: dict) -> tuple[int, list[str]]:
    """Runs every operation's cases; returns the number of requests sent and the failures. Blocking: schemathesis
    calls the app on its own event loop thread, while the test's loop keeps the worker and Temporal client going."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", world["app"])
    sent, failures = [], []
    for result in schema.get_all_operations():
        op = result.ok()
        try:
            _operation_test(op, world, sent)()
        except (FailureGroup, Exception) as e:  # every operation's failures are reported, not only the first
            failures.append(f"{op.label}: {e}")
    return len(sent), failures


def _operation_test(op, world: dict, sent: list):
    """A hypothesis test of one operation: positive and negative cases, sent with valid credentials (now and
    then none), each response checked against the document."""
    jobs_api = op.path.startswith("/api/v1/job")
    params = {p.name for p in op.path_parameters}
    # Aimed at real objects now and then, so that handlers get past their lookups (and a sync endpoint runs).
    strategies = [op.as_strategy(path_parameters={k: v for k, v in real.items() if k in params})
                  for real in (world["jobs_path"] if jobs_api else world["paths"]) if params]
    if op.method.upper() == "POST" and op.path.endswith("/execute") and not jobs_api:
        strategies.append(op.as_strategy(path_parameters=world["paths"][1], body=world["good_body"]))
    # The Jobs API's identity headers are sent as they are (the call sets them): never negated, or a negative case
    # would go out valid.
    fixed = {"headers": world["jobs"]} if jobs_api else {}
    strategies += [op.as_strategy(mode, **fixed) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]

    @settings(max_examples=API_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies), anonymous=st.integers(0, 9).map(lambda n: n == 9))
    def check(case, anonymous):
        headers = {} if anonymous else world["jobs"] if jobs_api else world["bearer"]
        response = case.call(headers=headers)
        sent.append(response.status_code)
        checks = CHECKS if jobs_api else CHECKS + BEARER_CHECKS
        case.validate_response(response, checks=checks, headers=headers, transport_kwargs={"headers": headers})

    return check


async def test_every_operation_answers_within_its_documented_contract(fuzz_world):
    sent, failures = await asyncio.to_thread(_fuzz, fuzz_world)
    assert not failures, "\n\n".join(failures)
    assert sent >= 20 * API_EXAMPLES
