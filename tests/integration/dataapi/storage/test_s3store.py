"""Both artifact stores pass the same behaviour tests: the local directory and S3 on a real S3-compatible server
(moto's server mode, a subprocess on loopback, so its memory never counts as ours)."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from dataapi.storage.base import ArtifactNotFound
from dataapi.storage.factory import make_store
from dataapi.storage.local import LocalArtifactStore
from dataapi.storage.s3 import S3ArtifactStore
from tests.support.s3 import CREDENTIALS, new_bucket

BIG_MB = 20


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Each behaviour test runs once per store; the S3 one uses a fresh bucket and a key prefix."""
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3ArtifactStore(new_bucket(endpoint), "dataapi/", endpoint, "us-east-1", **CREDENTIALS)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Two different 20 MB files (several multipart parts each), written in 1 MB chunks, with their SHA-256."""
    folder = tmp_path_factory.mktemp("big")
    files = {}
    for name in ("a", "b"):
        path, digest = folder / f"{name}.bin", hashlib.sha256()
        with open(path, "wb") as f:
            for _ in range(BIG_MB):
                chunk = os.urandom(1 << 20)
                digest.update(chunk)
                f.write(chunk)
        files[name] = (path, digest.hexdigest())
    return files


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _count_under(store, prefix: str) -> int:
    if isinstance(store, LocalArtifactStore):
        root = store.root / prefix
        return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=f"{store.prefix}/{prefix}/")
    return sum(len(page.get("Contents", [])) for page in pages)


class PeakRss:
    """Samples this process's resident set every few milliseconds (Linux): the peak growth over the start."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self):
        self.start = self.peak = self.rss()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / (1 << 20)


def test_put_and_get_bytes(store):
    store.put_bytes("results/acme/job1.json", b'{"rows": []}')
    assert store.get_bytes("results/acme/job1.json") == b'{"rows": []}'
    store.put_bytes("results/acme/job1.json", b"replaced")
    assert store.get_bytes("results/acme/job1.json") == b"replaced"
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""


def test_put_file_streams_a_large_file_in_bounded_memory(store, big_files, tmp_path):
    source, digest = big_files["a"]
    warm = tmp_path / "warm.bin"  # warms up the multipart code paths (imports, pools), two parts of 9 MB
    with open(warm, "wb") as f:
        f.truncate(9 << 20)
    store.put_file("warm", warm)
    store.get_file("warm", tmp_path / "warm.out")

    with PeakRss() as put:
        store.put_file("jobs/acme/j1/output.zip", source)
    assert put.growth_mb < 6, f"put_file of {BIG_MB} MB grew RSS by {put.growth_mb:.1f} MB"

    target = tmp_path / "out.bin"
    with PeakRss() as get:
        store.get_file("jobs/acme/j1/output.zip", target)
    assert get.growth_mb < 6, f"get_file of {BIG_MB} MB grew RSS by {get.growth_mb:.1f} MB"
    assert _sha256_file(target) == digest


def test_get_file_and_open_stream(store, tmp_path):
    data = os.urandom(3 << 20)
    store.put_bytes("jobs/acme/j1/logs.zip", data)
    store.get_file("jobs/acme/j1/logs.zip", tmp_path / "logs.zip")
    assert (tmp_path / "logs.zip").read_bytes() == data
    chunks = list(store.open_stream("jobs/acme/j1/logs.zip"))
    assert b"".join(chunks) == data and len(chunks) > 1 and all(chunks)


def test_local_path_is_for_local_stores_only(store):
    store.put_bytes("results/acme/j.json", b"{}")
    path = store.local_path("results/acme/j.json")
    if isinstance(store, LocalArtifactStore):
        assert path is not None and path.read_bytes() == b"{}"
    else:
        assert path is None  # callers stream with open_stream instead


def test_exists(store):
    assert not store.exists("results/acme/j.json")
    store.put_bytes("results/acme/j.json", b"{}")
    assert store.exists("results/acme/j.json")
    assert not store.exists("results/acme")  # a "folder" is not an artifact
    assert not store.exists("results/acme/j.jso")


def test_missing_keys_raise_artifact_not_found(store, tmp_path):
    with pytest.raises(ArtifactNotFound):
        store.get_bytes("results/acme/nope.json")
    with pytest.raises(ArtifactNotFound):
        store.get_file("results/acme/nope.json", tmp_path / "nope.json")
    assert not (tmp_path / "nope.json").exists()
    assert issubclass(ArtifactNotFound, KeyError)
    with pytest.raises(ArtifactNotFound):
        store.open_stream("results/acme/nope.json")  # at once, before iterating


@pytest.mark.slow  # moto answers about 100 requests a second
def test_delete_prefix_removes_1500_keys_over_several_pages(store):
    keys = [f"jobs/acme/j1/output/part-{i:04d}.csv" for i in range(1500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put_bytes(k, k.encode()), keys))
    store.put_bytes("jobs/acme/j10/result.json", b"sibling")  # shares the text prefix "jobs/acme/j1"
    store.put_bytes("jobs/acme/j2/result.json", b"other job")
    assert _count_under(store, "jobs/acme/j1") == 1500

    store.delete_prefix("jobs/acme/j1")
    assert _count_under(store, "jobs/acme/j1") == 0
    assert not store.exists(keys[0]) and not store.exists(keys[-1])
    assert store.get_bytes("jobs/acme/j10/result.json") == b"sibling"
    assert store.get_bytes("jobs/acme/j2/result.json") == b"other job"

    store.delete_prefix("jobs/acme/j2/")  # a trailing slash is the same prefix
    assert not store.exists("jobs/acme/j2/result.json")
    store.delete_prefix("jobs/acme/j10/result.json")  # one artifact
    assert not store.exists("jobs/acme/j10/result.json")
    store.delete_prefix("jobs/nobody")  # nothing there: no error


INVALID = ["", "/etc/passwd", "../escape", "a/../../b", "..", "a\\b"]
# A path would normalise these away, an S3 key would keep the empty or "." segment: both stores refuse them.
AMBIGUOUS = ["a//b", "./a", "a/./b"]


@pytest.mark.parametrize("key", INVALID + AMBIGUOUS)
def test_invalid_keys_are_refused(store, key, tmp_path):
    source = tmp_path / "f"
    source.write_bytes(b"x")
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.put_file(key, source),
                 lambda: store.get_bytes(key), lambda: store.get_file(key, tmp_path / "t"),
                 lambda: store.exists(key), lambda: store.local_path(key), lambda: store.delete_prefix(key)):
        with pytest.raises(ValueError):
            call()


def test_writes_are_visible_whole_or_not_at_all(store, big_files):
    """A reader racing a multipart write sees nothing (first write) or a whole version, never a mix."""
    (a, digest_a), (b, digest_b) = big_files["a"], big_files["b"]
    key = "jobs/acme/j1/output.zip"
    for source, allowed, final in ((a, {None, digest_a}, digest_a), (b, {digest_a, digest_b}, digest_b)):
        writer = threading.Thread(target=store.put_file, args=(key, source))
        seen = []
        writer.start()
        while writer.is_alive() or not seen:
            try:
                seen.append(hashlib.sha256(store.get_bytes(key)).hexdigest())
            except ArtifactNotFound:
                seen.append(None)
        writer.join()
        assert set(seen) <= allowed
        assert hashlib.sha256(store.get_bytes(key)).hexdigest() == final


def test_from_url_takes_credentials_from_the_environment(s3_endpoint, monkeypatch):
    bucket = new_bucket(s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    store = S3ArtifactStore.from_url(f"s3://{bucket}/deploy/a?endpoint={s3_endpoint}&region=eu-west-1")
    assert (store.bucket, store.prefix) == (bucket, "deploy/a")
    signed = []
    store.client.meta.events.register("before-send.s3", lambda request, **_: signed.append(request.headers))
    store.put_bytes("k", b"v")
    assert "Credential=AKIAFROMENVIRONMENT/" in signed[0]["Authorization"].decode()
    assert store.client.meta.region_name == "eu-west-1"
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    assert raw.get_object(Bucket=bucket, Key="deploy/a/k")["Body"].read() == b"v"


@pytest.mark.parametrize("url", ["s3:///nobucket", "http://bucket/x", "s3://b/p?endpoint=x&acl=public"])
def test_from_url_refuses_bad_urls(url):
    with pytest.raises(ValueError):
        S3ArtifactStore.from_url(url)


def test_make_store_chooses_by_scheme(tmp_path):
    assert isinstance(make_store(tmp_path), LocalArtifactStore)
    assert make_store(str(tmp_path / "a")).root == tmp_path / "a"
    assert make_store(f"file://{tmp_path}/with%20space").root == tmp_path / "with space"
    s3 = make_store("s3://my-bucket/some/prefix?endpoint=http://127.0.0.1:9&region=us-east-1")
    assert isinstance(s3, S3ArtifactStore) and (s3.bucket, s3.prefix) == ("my-bucket", "some/prefix")
    for bad in ("", "gs://bucket", "file://otherhost/x"):
        with pytest.raises(ValueError):
            make_store(bad)


def test_a_store_at_the_bucket_root(s3_endpoint):
    store = S3ArtifactStore(new_bucket(s3_endpoint), "", s3_endpoint, "us-east-1", **CREDENTIALS)
    store.put_bytes("results/acme/j.json", b"{}")
    assert store.client.head_object(Bucket=store.bucket, Key="results/acme/j.json")["ContentLength"] == 2
    store.delete_prefix("results")
    assert not store.exists("results/acme/j.json")
