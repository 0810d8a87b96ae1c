"""Encryption of everything the project hands to Temporal: workflow and activity inputs, results and failure
texts are AES-256-GCM ciphertext in Temporal's store, its UI and its CLI output.

Each payload is serialised whole (its metadata, e.g. ``encoding``, and its data) and encrypted with the active
key under a fresh 96-bit nonce; the result is a payload whose metadata says ``binary/encrypted`` and names the
key id (``encryption-key-id``), so keys rotate: new payloads use the active key, older ones decode with any key
still in the keyset. The key id is also the ciphertext's associated data, so a payload relabelled with another
key id fails authentication. Payloads without the ``binary/encrypted`` marker (histories recorded before
encryption, or written with it switched off) pass through decoding unchanged.

The keyset is ``DATAAPI_PAYLOAD_KEYSET`` (JSON ``{"active_kid": ..., "keys": {kid: base64 of 32 bytes}}``) or,
when that is empty, generated once into ``var/payload-keys.json`` (mode 0600), like the JWT keyset.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from dataapi.secrets import _load_or_create, _write_private
from dataapi.settings import Settings

log = logging.getLogger("dataapi.codec")

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
CIPHER = "encryption-cipher"
_CIPHER = b"AES256-GCM"
_NONCE_BYTES = 12
KEY_BYTES = 32


class PayloadDecryptionError(ValueError):
    """An encrypted payload that cannot be read: unknown key id, or ciphertext that fails authentication."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads. ``encrypt=False`` writes plaintext but still reads ciphertext (an
    operator who switches encryption off keeps reading what was written before)."""

    def __init__(self, keys: dict[str, bytes], active_kid: str, *, encrypt: bool = True):
        if active_kid not in keys:
            raise ValueError(f"the active payload key id {active_kid!r} is not in the keyset")
        for kid, key in keys.items():
            if len(key) != KEY_BYTES:
                raise ValueError(f"payload key {kid!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        self.active_kid = active_kid
        self.encrypt = encrypt
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active = self._ciphers[active_kid]
        self._active_kid_bytes = active_kid.encode()

    @classmethod
    def from_keyset(cls, keyset: dict, *, encrypt: bool = True) -> EncryptionCodec:
        return cls(parse_keyset(keyset), keyset.get("active_kid", ""), encrypt=encrypt)

    def encode_one(self, payload: Payload) -> Payload:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._active.encrypt(nonce, payload.SerializeToString(), self._active_kid_bytes)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._active_kid_bytes, CIPHER: _CIPHER},
                       data=nonce + sealed)

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # plaintext: recorded before encryption, or with it off
        kid_bytes = payload.metadata.get(KEY_ID, b"")
        kid = kid_bytes.decode(errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid!r}, which is not in the keyset (known: "
                f"{', '.join(sorted(self._ciphers))}); restore that key to read it")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], kid_bytes)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid!r} fails authentication: tampered or truncated") from None
        return Payload.FromString(plain)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self.encrypt:
            return list(payloads)
        return [self.encode_one(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


# --- the keyset ------------------------------------------------------------------------------------------

def new_key_id() -> str:
    return "p" + secrets.token_hex(4)


def new_key() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def new_keyset() -> dict:
    kid = new_key_id()
    return {"active_kid": kid, "keys": {kid: new_key()}}


def parse_keyset(keyset: dict) -> dict[str, bytes]:
    """kid → key bytes, with a clear error for a malformed keyset (a typo must stop the process at start, not
    write payloads nobody can read)."""
    if not isinstance(keyset, dict) or not isinstance(keyset.get("keys"), dict) or not keyset["keys"]:
        raise ValueError('the payload keyset must be {"active_kid": ..., "keys": {kid: base64 key}}')
    keys = {}
    for kid, value in keyset["keys"].items():
        try:
            keys[kid] = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValueError(f"payload key {kid!r} is not valid base64") from None
        if len(keys[kid]) != KEY_BYTES:
            raise ValueError(f"payload key {kid!r} is {len(keys[kid])} bytes; AES-256 needs {KEY_BYTES}")
    if keyset.get("active_kid") not in keys:
        raise ValueError(f"the active payload key id {keyset.get('active_kid')!r} is not in the keyset")
    return keys


def keyset_path(settings: Settings) -> Path:
    return settings.var_dir / "payload-keys.json"


def payload_keyset(settings: Settings) -> dict:
    if settings.payload_keyset:
        try:
            return json.loads(settings.payload_keyset)
        except json.JSONDecodeError:
            raise ValueError("DATAAPI_PAYLOAD_KEYSET is not valid JSON") from None
    return json.loads(_load_or_create(keyset_path(settings), lambda: json.dumps(new_keyset(), indent=2)))


def rotate_keyset(keyset: dict, *, activate: bool = True) -> tuple[dict, str]:
    """The keyset with a new key (made the active one unless ``activate`` is false); every older key stays, so
    what it encrypted keeps decoding."""
    parse_keyset(keyset)
    kid = new_key_id()
    rotated = {"active_kid": kid if activate else keyset["active_kid"], "keys": {**keyset["keys"], kid: new_key()}}
    return rotated, kid


def rotate_embedded_keyset(settings: Settings, *, activate: bool = True) -> str:
    """Rotates var/payload-keys.json in place; returns the new key id."""
    if settings.payload_keyset:  # the file written below would be ignored in favour of the setting
        raise ValueError("the payload keyset is configured by DATAAPI_PAYLOAD_KEYSET; rotate it there")
    path = keyset_path(settings)
    keyset, kid = rotate_keyset(payload_keyset(settings), activate=activate)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_private(tmp, json.dumps(keyset, indent=2))
    tmp.replace(path)
    return kid


_codecs: dict[tuple[str, bool], EncryptionCodec] = {}


def payload_codec(settings: Settings) -> EncryptionCodec:
    """The process's codec for these settings (built once per keyset: every client and worker shares it)."""
    keyset = payload_keyset(settings)
    cache_key = (json.dumps(keyset, sort_keys=True), settings.payload_encryption)
    codec = _codecs.get(cache_key)
    if codec is None:
        codec = EncryptionCodec.from_keyset(keyset, encrypt=settings.payload_encryption)
        if not settings.payload_encryption:
            log.warning("DATAAPI_PAYLOAD_ENCRYPTION=false: workflow inputs, results and errors are written to "
                        "Temporal in plaintext (existing ciphertext still decodes)")
        _codecs[cache_key] = codec
    return codec


# --- the codec endpoint's operator token -----------------------------------------------------------------

def codec_token_path(settings: Settings) -> Path:
    return settings.var_dir / "codec-token"


def codec_token(settings: Settings) -> str | None:
    """The operator token of the codec endpoint: the setting, else var/codec-token when the embedded stack made
    one; ``None`` switches the endpoint off."""
    if settings.codec_token:
        return settings.codec_token.strip()
    try:
        return codec_token_path(settings).read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_codec_token(settings: Settings) -> str:
    """The embedded stack's operator token, generated once into var/codec-token (mode 0600)."""
    return codec_token(settings) or _load_or_create(
        codec_token_path(settings), lambda: secrets.token_urlsafe(32)).strip()
