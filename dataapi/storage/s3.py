"""The artifact store on any S3-compatible service (AWS S3, MinIO, ...), for deployments on several machines.

Same keys and behaviour as the local store: a PUT (single or multipart) becomes visible whole or not at all,
so readers never see half an artifact. Files stream in and out in parts, never whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from dataapi.storage.base import ArtifactNotFound, check_key

PART_BYTES = 8 << 20  # multipart threshold and part size (S3 wants parts of at least 5 MiB)
STREAM_CHUNK_BYTES = 1 << 20  # open_stream yields chunks of this size
DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_MISSING = {"404", "NoSuchKey", "NotFound"}

# At most 2 parts in flight per transfer and a short download queue: memory stays a few parts whatever the size.
TRANSFER = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2,
                          io_chunksize=256 << 10, max_io_queue=4)


def _missing(e: ClientError) -> bool:
    return str(e.response.get("Error", {}).get("Code")) in _MISSING


class S3ArtifactStore:
    """Artifacts as objects ``<prefix>/<key>`` of one bucket (which must exist)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None):
        if not bucket:
            raise ValueError("an S3 artifact store needs a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Credentials left as None come from the standard chain (AWS_ACCESS_KEY_ID, ..., instance roles).
        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                        region_name=region)
        config = Config(retries={"mode": "standard"}, max_pool_connections=32,
                        s3={"addressing_style": "path"} if endpoint_url else None)  # MinIO-style endpoints
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)

    @classmethod
    def from_url(cls, url: str, access_key: str | None = None, secret_key: str | None = None) -> S3ArtifactStore:
        """``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`` (endpoint and region optional)."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint", "region"}
        if unknown:
            raise ValueError(f"unknown S3 URL options: {', '.join(sorted(unknown))}")
        return cls(parts.netloc, parts.path, query.get("endpoint"), query.get("region"), access_key, secret_key)

    def _key(self, key: str) -> str:
        # check_key lets "a//b" and "./a" through (a path normalises them); an object key would not, so refuse.
        if any(part in ("", ".") for part in check_key(key).split("/")):
            raise ValueError(f"invalid artifact key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, source: Path) -> None:
        """Streams a file in, in parts above PART_BYTES; the object appears only when the upload completes."""
        self.client.upload_file(str(source), self.bucket, self._key(key), Config=TRANSFER)

    def _body(self, key: str) -> StreamingBody:
        """The object's streaming body; a missing key raises ArtifactNotFound."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as e:
            if _missing(e):
                raise ArtifactNotFound(key) from None
            raise

    def get_bytes(self, key: str) -> bytes:
        with self._body(key) as body:
            return body.read()

    def get_file(self, key: str, target: Path) -> None:
        """Streams the object to ``target`` (written to a temporary name, then renamed)."""
        try:
            self.client.download_file(self.bucket, self._key(key), str(target), Config=TRANSFER)
        except ClientError as e:
            if _missing(e):
                raise ArtifactNotFound(key) from None
            raise

    def open_stream(self, key: str, chunk_bytes: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
        """The object as chunks, for streaming responses. A missing key raises ArtifactNotFound now, not when
        iteration starts; the connection is released when the iterator is exhausted or closed."""
        body = self._body(key)

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(chunk_bytes)

        return chunks()

    def local_path(self, key: str) -> Path | None:
        """Never a path: callers stream with open_stream."""
        self._key(key)
        return None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if _missing(e):
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> None:
        """Deletes the object ``prefix`` and every object under ``prefix/`` (not ``prefix-other``), in batches.
        A key S3 refuses to delete raises OSError, as a local file would."""
        base = self._key(prefix.rstrip("/"))
        batch = [base]
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + "/"):
            for obj in page.get("Contents", []):
                batch.append(obj["Key"])
                if len(batch) == DELETE_BATCH:
                    self._delete(batch)
                    batch = []
        if batch:
            self._delete(batch)

    def _delete(self, keys: list[str]) -> None:
        answer = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            raise OSError(f"S3 refused to delete {len(errors)} objects, e.g. {first.get('Key')}: "
                          f"{first.get('Code')} {first.get('Message', '')}".rstrip())
