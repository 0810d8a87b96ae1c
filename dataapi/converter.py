"""Temporal's payload converter with a shorter path for the messages every sync call converts.

A sync execution converts its ``QueryInput`` four times (the start, the workflow's activation, the local
activity's schedule and its execution) and its ``QueryOutput`` three. Temporal's JSON converter encodes a
dataclass through ``json.dumps`` with ``dataclasses.asdict``, and decodes one through ``value_to_type``, which
calls ``typing.get_type_hints`` and walks every field's hint on each call. Here those messages are written by
orjson and rebuilt from a shape worked out once per class, with the same checks for their (flat) field types:
the same ``json/plain`` payloads, readable by the default converter and by any other SDK, and the default
converter's payloads (every recorded history) read back alike. Every other value takes the default path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import orjson
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

from dataapi.messages import QueryInput, QueryOutput
from dataapi.settings import Settings

_ENCODING = b"json/plain"
_PRIMITIVES = (str, int, float, bool, list, dict)


def _field_kind(hint: Any) -> tuple[type, bool]:
    """(type, optional) for the flat hints this path takes: a primitive, ``list[...]``/``dict`` or either
    ``| None``."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"unsupported hint {hint}")
        hint, optional = args[0], True
    base = typing.get_origin(hint) or hint
    if base not in _PRIMITIVES:
        raise TypeError(f"unsupported hint {hint}")
    return base, optional


class _Shape:
    """How to rebuild one message class from its JSON object, checked as ``value_to_type`` checks it: unknown
    fields are ignored (a newer version's), missing ones take their defaults or fail, numbers are cast to their
    field's int/float, any other type mismatch fails."""

    def __init__(self, cls: type):
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self.fields = {f.name: _field_kind(hints[f.name]) for f in dataclasses.fields(cls)}

    def build(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            raise TypeError(f"Cannot convert to dataclass {self.cls.__name__}, value is {type(obj)} not dict")
        kwargs: dict[str, Any] = {}
        for name, (kind, optional) in self.fields.items():
            if name not in obj:
                continue
            value = obj[name]
            if value is None and optional:
                kwargs[name] = None
            elif kind is int or kind is float:
                if not isinstance(value, int | float):  # a bool passes, as with value_to_type
                    raise TypeError(f"Failed converting field {name} on dataclass {self.cls.__name__}")
                kwargs[name] = kind(value)
            elif isinstance(value, kind):
                kwargs[name] = value
            else:
                raise TypeError(f"Failed converting field {name} on dataclass {self.cls.__name__}")
        return self.cls(**kwargs)


class FastJSONPlainPayloadConverter(JSONPlainPayloadConverter):
    """``json/plain`` with the short path for the classes in ``SHAPES``."""

    SHAPES = {cls: _Shape(cls) for cls in (QueryInput, QueryOutput)}

    def to_payload(self, value: Any) -> Payload | None:
        if type(value) in self.SHAPES:
            try:
                data = orjson.dumps(value)  # orjson writes dataclasses itself
            except TypeError:  # e.g. an integer beyond 64 bits in the parameters: the default path takes it
                pass
            else:
                return Payload(metadata={"encoding": _ENCODING}, data=data)
        return super().to_payload(value)

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        shape = self.SHAPES.get(type_hint)  # type: ignore[arg-type]
        if shape is None:
            return super().from_payload(payload, type_hint)
        try:
            obj = orjson.loads(payload.data)
        except orjson.JSONDecodeError:  # e.g. NaN, which json.dumps writes and orjson does not read
            return super().from_payload(payload, type_hint)
        return shape.build(obj)


_CONVERTERS = tuple(FastJSONPlainPayloadConverter() if isinstance(c, JSONPlainPayloadConverter) else c
                    for c in DefaultPayloadConverter.default_encoding_payload_converters)


class PayloadConverter(CompositePayloadConverter):
    """The default converters, with ``json/plain`` taking the short path for our messages. The SDK makes one per
    serialization context (several per workflow task): they share the same stateless converters, as the
    default one does."""

    def __init__(self) -> None:
        super().__init__(*_CONVERTERS)


DATA_CONVERTER = dataclasses.replace(DataConverter.default, payload_converter_class=PayloadConverter)
"""The payload converter alone: plaintext payloads (what every client of ours writes with encryption off)."""


def data_converter(settings: Settings) -> DataConverter:
    """Every client's and worker's converter: ``DATA_CONVERTER`` with the payload codec of ``dataapi.codec``
    (AES-GCM), and failures whose message and stack trace travel as an encoded payload too, so error texts
    (which can quote a tenant's SQL or values) are ciphertext as well; Temporal shows "Encoded failure"."""
    from dataapi.codec import payload_codec

    codec = payload_codec(settings)
    if not codec.encrypt:  # plaintext on purpose: failures readable too; earlier ciphertext still decodes
        return dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
