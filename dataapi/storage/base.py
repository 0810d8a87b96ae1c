"""The artifact store's interface: results, inputs, outputs and logs live in a store, never in workflow
history. Keys are relative POSIX paths such as ``results/acme/<job_id>.json``; every store makes an artifact
visible whole or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class ArtifactStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, source: Path) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_file(self, key: str, target: Path) -> None: ...
    def local_path(self, key: str) -> Path | None: ...
    def open_stream(self, key: str) -> Iterator[bytes]: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> None: ...


class ArtifactNotFound(KeyError):
    pass


def check_key(key: str) -> str:
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")) or "\\" in key:
        raise ValueError(f"invalid artifact key {key!r}")
    return key
