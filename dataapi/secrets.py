"""Secret material: configured through settings in production, generated once under var/ when embedded."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataapi.settings import Settings


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


def _load_or_create(path: Path, make: Callable[[], str]) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        pass
    # Written aside, then hard-linked into place: a reader never sees a created but still empty file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_private(tmp, make())
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process won the race; use its value
        pass
    finally:
        tmp.unlink()
    return path.read_text()


def secret_key(settings: Settings) -> bytes:
    """The key for hashing API key secrets (HMAC-SHA256)."""
    value = settings.secret_key or _load_or_create(settings.var_dir / "secret-key", lambda: secrets.token_urlsafe(48))
    return value.strip().encode()


def metrics_token_path(settings: Settings) -> Path:
    return settings.var_dir / "metrics-token"


def metrics_token(settings: Settings) -> str | None:
    """The bearer token ``GET /metrics`` needs: ``DATAAPI_METRICS_TOKEN``, else var/metrics-token when the embedded
    stack made one; ``None``: no token (the endpoint is refused unless ``DATAAPI_METRICS_PUBLIC``)."""
    if settings.metrics_token.strip():
        return settings.metrics_token.strip()
    try:
        return metrics_token_path(settings).read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_metrics_token(settings: Settings) -> str:
    """The embedded stack's metrics token, generated once into var/metrics-token (mode 0600)."""
    return metrics_token(settings) or _load_or_create(
        metrics_token_path(settings), lambda: secrets.token_urlsafe(32)).strip()


def new_signing_key() -> tuple[str, str]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def new_keyset() -> dict:
    kid = "k" + secrets.token_hex(4)
    private, public = new_signing_key()
    return {"signing_kid": kid, "keys": {kid: {"private": private, "public": public}}}


def keyset_path(settings: Settings) -> Path:
    return settings.var_dir / "jwt-keys.json"


def jwt_keyset(settings: Settings) -> dict:
    if settings.jwt_keyset:
        return json.loads(settings.jwt_keyset)
    return json.loads(_load_or_create(keyset_path(settings), lambda: json.dumps(new_keyset(), indent=2)))


def rotate_keyset(settings: Settings) -> str:
    """Adds a new signing key to the embedded keyset; older keys keep verifying until removed."""
    if settings.jwt_keyset:  # the file written below would be ignored in favour of the setting
        raise ValueError("the keyset is configured by DATAAPI_JWT_KEYSET; rotate it there")
    path = keyset_path(settings)
    keyset = jwt_keyset(settings)
    kid = "k" + secrets.token_hex(4)
    private, public = new_signing_key()
    keyset["keys"][kid] = {"private": private, "public": public}
    keyset["signing_kid"] = kid
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _write_private(tmp, json.dumps(keyset, indent=2))
    tmp.replace(path)
    return kid
