"""The store an operator configured: the local artifact directory by default, a path, or any S3-compatible
service (``DATAAPI_ARTIFACT_STORE``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from dataapi.settings import Settings
from dataapi.storage.base import ArtifactStore
from dataapi.storage.local import LocalArtifactStore


def make_store(url_or_path: str | Path) -> ArtifactStore:
    """The store an operator configured: ``s3://bucket/prefix?...`` for S3, a path or ``file://`` URL for local."""
    if isinstance(url_or_path, Path):
        return LocalArtifactStore(url_or_path)
    if url_or_path.startswith("s3://"):
        from dataapi.storage.s3 import S3ArtifactStore  # boto3 only when configured

        return S3ArtifactStore.from_url(url_or_path)
    if url_or_path.startswith("file://"):
        parts = urlsplit(url_or_path)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"a file:// artifact store must be local: {url_or_path!r}")
        return LocalArtifactStore(Path(unquote(parts.path)))
    if "://" in url_or_path or not url_or_path:
        raise ValueError(f"unsupported artifact store {url_or_path!r}: use a path, file:///path or s3://bucket/prefix")
    return LocalArtifactStore(Path(url_or_path))


def store_from_settings(settings: Settings) -> ArtifactStore:
    """``DATAAPI_ARTIFACT_STORE`` (s3://bucket/prefix?endpoint=... or a path), else the local artifact dir."""
    if not settings.artifact_store:
        return LocalArtifactStore(settings.resolved_artifact_dir)
    return make_store(settings.artifact_store)
