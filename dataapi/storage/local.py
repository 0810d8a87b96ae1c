"""The artifact store in a local directory (the embedded default). Writes go through a temporary file renamed
into place, so a reader never sees half an artifact."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from dataapi.storage.base import ArtifactNotFound, check_key

_TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _temporary_beside(target: Path) -> tuple[int, str]:
    """A new file in ``target``'s folder that no one else opened (O_EXCL), readable by the owner only, as
    ``tempfile.mkstemp`` makes them, minus its directory checks (one write per result: the hot path)."""
    tmp = f"{target.parent}/.tmp-{secrets.token_hex(8)}"
    return os.open(tmp, _TEMPORARY_FLAGS, 0o600), tmp


class LocalArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        """Writes through a temporary file renamed into place, so readers never see half an artifact."""
        target = self.path(key)
        try:
            fd, tmp = _temporary_beside(target)
        except FileNotFoundError:  # the folder's first artifact (or the folder was deleted): make it
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _temporary_beside(target)
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda f: f.write(data))

    def put_file(self, key: str, source: Path) -> None:
        """Streams a file in (never whole in memory)."""

        def copy(f: BinaryIO) -> None:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        self._write(key, copy)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(key) from None

    def get_file(self, key: str, target: Path) -> None:
        try:
            shutil.copyfile(self.path(key), target)
        except FileNotFoundError:
            raise ArtifactNotFound(key) from None

    def local_path(self, key: str) -> Path | None:
        """A path to read the artifact from directly (a local store has one), for streaming responses."""
        path = self.path(key)
        return path if path.is_file() else None

    def open_stream(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        try:
            f = self.path(key).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(key) from None

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(chunk_bytes):
                    yield chunk

        return chunks()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix.rstrip("/"))
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
