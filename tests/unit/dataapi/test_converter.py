"""The payload converter's short path for QueryInput/QueryOutput reads and writes what the default converter
does, checks field types as it does, and leaves everything else to it."""

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from dataapi.converter import DATA_CONVERTER
from dataapi.messages import FinishInput, QueryInput, QueryOutput

DEFAULT = DataConverter.default.payload_converter
OURS = DATA_CONVERTER.payload_converter


def _input(**changes) -> QueryInput:
    fields = dict(job_id="a" * 24, company_id=1, company_slug="acme", endpoint_id=2, endpoint="sales/by-region",
                  sql="SELECT 'São Paulo' AS city WHERE $n > 0", param_specs=[{"name": "n", "type": "integer"}],
                  params={"n": 5}, max_rows=100, mode="sync", timeout_seconds=60.0, user_id=None, api_key_id=7,
                  deadline=1.7e9, callback_schedule_seconds=[0.0, 5.0])
    return QueryInput(**{**fields, **changes})


@pytest.mark.parametrize("value", [_input(), QueryOutput(status="completed", result_key="r/x.json", row_count=3,
                                                          truncated=True, executed_at="2026-12-02T00:00:00Z"),
                                   QueryOutput(status="failed", error="boom", error_type="ExecutionError")])
def test_both_converters_read_each_others_payloads(value):
    ours, default = OURS.to_payloads([value])[0], DEFAULT.to_payloads([value])[0]
    assert ours.metadata["encoding"] == default.metadata["encoding"] == b"json/plain"
    assert OURS.from_payloads([default], [type(value)])[0] == value
    assert DEFAULT.from_payloads([ours], [type(value)])[0] == value
    assert OURS.from_payloads([ours], [type(value)])[0] == value


def test_numbers_are_cast_unknown_fields_ignored_and_defaults_filled():
    payload = Payload(metadata={"encoding": b"json/plain"},
                      data=b'{"status":"completed","row_count":3.0,"from_a_newer_version":1}')
    out = OURS.from_payloads([payload], [QueryOutput])[0]
    assert out == DEFAULT.from_payloads([payload], [QueryOutput])[0]
    assert out.row_count == 3 and type(out.row_count) is int and out.result_key is None


@pytest.mark.parametrize("data", [b'{"row_count":1}', b'{"status":5}', b'{"status":"x","truncated":"no"}',
                                  b'[1]'])
def test_a_payload_the_default_converter_refuses_is_refused(data):
    payload = Payload(metadata={"encoding": b"json/plain"}, data=data)
    with pytest.raises(TypeError):
        DEFAULT.from_payloads([payload], [QueryOutput])
    with pytest.raises(TypeError):
        OURS.from_payloads([payload], [QueryOutput])


def test_what_orjson_cannot_write_or_read_takes_the_default_path():
    huge = _input(params={"n": 2**70})  # beyond 64 bits: orjson refuses, json writes it
    assert OURS.from_payloads(OURS.to_payloads([huge]), [QueryInput])[0] == huge
    nan = Payload(metadata={"encoding": b"json/plain"}, data=b'{"status":"x","row_count":0,"error":NaN}')
    with pytest.raises(TypeError):  # the default converter's own verdict on NaN in a str field
        OURS.from_payloads([nan], [QueryOutput])


def test_other_messages_take_the_default_path():
    value = FinishInput(_input(), "Execution cancelled", {"row_count": 0})
    assert OURS.from_payloads(OURS.to_payloads([value]), [FinishInput])[0] == value
    assert OURS.to_payloads([value])[0].data == DEFAULT.to_payloads([value])[0].data


async def test_the_full_converter_encrypts_what_the_short_path_writes_and_reads_it_back():
    """data_converter(settings): the same short path, then the payload codec; failures travel encoded too."""
    import json

    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    from dataapi.codec import new_keyset
    from dataapi.converter import data_converter
    from dataapi.settings import Settings

    converter = data_converter(Settings(payload_keyset=json.dumps(new_keyset())))
    value = _input(sql="SELECT 'segredo' AS s", params={"n": 987654321})
    [sealed] = await converter.encode([value])
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert b"segredo" not in sealed.data and b"987654321" not in sealed.data
    assert await converter.decode([sealed], [QueryInput]) == [value]
    [plain] = OURS.to_payloads([value])  # a history written before encryption reads back unchanged
    assert await converter.decode([plain], [QueryInput]) == [value]

    failure = Failure()
    await converter.encode_failure(ApplicationError("bad value segredo", type="ExecutionError"), failure)
    assert failure.message == "Encoded failure" and b"segredo" not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert decoded.message == "bad value segredo" and decoded.type == "ExecutionError"
