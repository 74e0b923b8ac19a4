"""S3Storage against a real moto server: uploads, scans, ranged reads, errors, pickling."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from typing import Any

import boto3
import pytest
from botocore.config import Config

from clientes_ingest.s3 import S3Storage, split_s3_uri
from clientes_ingest.settings import load_settings
from clientes_ingest.storage import LocalStorage, ObjectVersion, StorageError, VersionMismatch

MIB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    # Incompressible and position-dependent, so a misplaced byte range cannot compare equal by chance.
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class CountingReader(io.RawIOBase):
    """A source that hands out fewer bytes than asked, like a socket, to test part buffering."""

    def __init__(self, data: bytes, max_read: int) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.max_read = max_read

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.max_read if size < 0 else min(size, self.max_read)
        chunk = bytes(self.data[self.pos : self.pos + size])
        self.pos += len(chunk)
        return chunk


@pytest.fixture
def storage(aws_s3_client: Any, aws_bucket: str) -> S3Storage:
    return S3Storage(aws_s3_client, aws_bucket, "incoming/")


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://b/incoming/a b+c.dat") == ("b", "incoming/a b+c.dat")
    for bad in ["file:///x", "s3://", "s3://bucket", "s3://bucket/", "s3:///key"]:
        with pytest.raises(StorageError):
            split_s3_uri(bad)


def test_small_store_is_one_put_and_reports_hash(
    storage: S3Storage, aws_s3_client: Any, aws_bucket: str
) -> None:
    data = b"Maria|Gomez|45678901|Activo|11/13/2021|true|false\n" * 10
    seen: list[bytes] = []
    stored = storage.store(io.BytesIO(data), "../../etc/CLIENTES_IN_0425.dat", on_block=seen.append)
    key = split_s3_uri(stored.uri)[1]
    assert re.fullmatch(r"incoming/\d{8}T\d{6}Z-[0-9a-f]{12}/CLIENTES_IN_0425\.dat", key), key
    assert stored.name == "CLIENTES_IN_0425.dat"
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert b"".join(seen) == data
    body = aws_s3_client.get_object(Bucket=aws_bucket, Key=key)["Body"].read()
    assert body == data
    assert stored.version is not None and stored.version.etag == hashlib.md5(data).hexdigest()  # noqa: S324
    assert storage.exists(stored.uri)
    assert storage.owns(stored.uri)


def test_large_store_is_multipart_with_exact_parts(
    storage: S3Storage, aws_s3_client: Any, aws_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(2 * 8 * MIB + 12345)
    calls: list[int] = []
    real_upload_part = aws_s3_client.upload_part

    def spy(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Body"]))
        return real_upload_part(**kwargs)

    monkeypatch.setattr(aws_s3_client, "upload_part", spy)
    # Reads of 3 MiB: parts must still be exactly 8 MiB except the last.
    stored = storage.store(CountingReader(data, 3 * MIB), "CLIENTES_IN_0525.dat")
    assert calls == [8 * MIB, 8 * MIB, 12345]
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    got = aws_s3_client.get_object(Bucket=aws_bucket, Key=split_s3_uri(stored.uri)[1])["Body"].read()
    assert got == data
    assert aws_s3_client.list_multipart_uploads(Bucket=aws_bucket).get("Uploads", []) == []


def test_failed_upload_is_aborted(storage: S3Storage, aws_s3_client: Any, aws_bucket: str) -> None:
    data = payload(9 * MIB)

    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            chunk = self.inner.read(size)
            if not chunk:
                raise OSError("disk went away")
            return chunk

    with pytest.raises(OSError, match="disk went away"):
        storage.store(Broken(), "CLIENTES_IN_0625.dat")
    assert aws_s3_client.list_multipart_uploads(Bucket=aws_bucket).get("Uploads", []) == []
    assert aws_s3_client.list_objects_v2(Bucket=aws_bucket).get("KeyCount") == 0


def test_empty_file_can_be_stored(storage: S3Storage) -> None:
    stored = storage.store(io.BytesIO(b""), "CLIENTES_IN_0725.dat")
    assert stored.size == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert list(storage.iter_range(stored.uri, 0, 0)) == []


def test_scan_streams_object_once(storage: S3Storage, aws_s3_client: Any, aws_bucket: str) -> None:
    data = payload(9 * MIB + 7, seed=3)
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/x y+z.dat", Body=data)
    blocks: list[int] = []
    stored = storage.scan(f"s3://{aws_bucket}/incoming/x y+z.dat", on_block=lambda b: blocks.append(len(b)))
    assert stored.name == "x y+z.dat"
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert sum(blocks) == len(data)
    assert max(blocks) <= 8 * MIB


@pytest.mark.parametrize(
    ("start", "end", "block"), [(0, 100, 7), (5, 5, 4), (1, 9 * MIB, 4 * MIB), (17, 60, 1)]
)
def test_iter_range_returns_exact_bytes_in_blocks(
    storage: S3Storage, aws_s3_client: Any, aws_bucket: str, start: int, end: int, block: int
) -> None:
    data = payload(9 * MIB + 100, seed=1)
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/r.dat", Body=data)
    uri = f"s3://{aws_bucket}/incoming/r.dat"
    pieces = list(storage.iter_range(uri, start, end, block_size=block))
    assert b"".join(pieces) == data[start:end]
    assert all(len(p) <= block for p in pieces)


def test_iter_range_uses_ranged_gets(
    storage: S3Storage, aws_s3_client: Any, aws_bucket: str, monkeypatch: Any
) -> None:
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/r.dat", Body=payload(1000))
    ranges: list[str] = []
    real = aws_s3_client.get_object

    def spy(**kwargs: Any) -> Any:
        ranges.append(kwargs.get("Range", "<whole>"))
        return real(**kwargs)

    monkeypatch.setattr(aws_s3_client, "get_object", spy)
    list(storage.iter_range(f"s3://{aws_bucket}/incoming/r.dat", 100, 350, block_size=100))
    assert ranges == ["bytes=100-199", "bytes=200-299", "bytes=300-349"]


def test_range_past_end_is_a_clear_error(storage: S3Storage, aws_s3_client: Any, aws_bucket: str) -> None:
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/s.dat", Body=b"0123456789")
    uri = f"s3://{aws_bucket}/incoming/s.dat"
    with pytest.raises(StorageError, match="shorter than expected"):
        list(storage.iter_range(uri, 5, 20, block_size=100))
    with pytest.raises(StorageError, match="shorter than expected"):
        list(storage.iter_range(uri, 50, 60))


def test_missing_object_errors_name_the_uri(storage: S3Storage, aws_bucket: str) -> None:
    uri = f"s3://{aws_bucket}/incoming/nope.dat"
    assert not storage.exists(uri)
    with pytest.raises(StorageError, match=f"cannot read {uri}: no such object"):
        storage.scan(uri)
    with pytest.raises(StorageError, match="no such object"):
        list(storage.iter_range(uri, 0, 10))


def test_object_replaced_after_scan_is_detected(
    storage: S3Storage, aws_s3_client: Any, aws_bucket: str
) -> None:
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/v.dat", Body=b"first version\n")
    uri = f"s3://{aws_bucket}/incoming/v.dat"
    storage.scan(uri)
    assert b"".join(storage.iter_range(uri, 0, 5)) == b"first"
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/v.dat", Body=b"other version\n")
    with pytest.raises(VersionMismatch, match="no longer the version the run was started for"):
        list(storage.iter_range(uri, 0, 5))


def test_two_uploads_of_one_name_are_two_objects_each_read_as_stored(storage: S3Storage) -> None:
    first = storage.store(io.BytesIO(b"first file\n"), "CLIENTES_IN_0525.dat")
    second = storage.store(io.BytesIO(b"second file, longer\n"), "CLIENTES_IN_0525.dat")
    assert first.uri != second.uri and first.name == second.name
    assert b"".join(storage.iter_range(first.uri, 0, first.size)) == b"first file\n"
    assert b"".join(storage.iter_range(second.uri, 0, second.size)) == b"second file, longer\n"


@pytest.fixture
def versioned(aws_s3_client: Any, aws_bucket: str) -> str:
    aws_s3_client.put_bucket_versioning(Bucket=aws_bucket, VersioningConfiguration={"Status": "Enabled"})
    return aws_bucket


def test_a_pinned_etag_reads_its_version_after_the_key_was_overwritten(
    aws_s3_client: Any, versioned: str, aws_env: str
) -> None:
    put = aws_s3_client.put_object(Bucket=versioned, Key="incoming/CLIENTES_IN_0525.dat", Body=b"first file\n")
    aws_s3_client.put_object(Bucket=versioned, Key="incoming/CLIENTES_IN_0525.dat", Body=b"second one\n")
    uri = f"s3://{versioned}/incoming/CLIENTES_IN_0525.dat"
    # What an S3 event without a version id names: the ETag. A fresh (pickled) storage, as a run has.
    run_storage = pickle.loads(pickle.dumps(S3Storage.from_settings(load_settings(), source=uri)))  # noqa: S301
    pinned = run_storage.pin(uri, ObjectVersion(etag=put["ETag"].strip('"')))
    assert pinned.version_id == put["VersionId"]
    chunk_task = pickle.loads(pickle.dumps(run_storage))  # noqa: S301 - the pin travels to chunk tasks
    assert b"".join(chunk_task.iter_range(uri, 0, 11)) == b"first file\n"
    assert chunk_task.scan(uri).sha256 == hashlib.sha256(b"first file\n").hexdigest()
    # Pinned by version id (what a versioned bucket's event or HEAD names) works the same.
    by_id = S3Storage.from_settings(load_settings(), source=uri)
    by_id.pin(uri, ObjectVersion(version_id=put["VersionId"]))
    assert b"".join(by_id.iter_range(uri, 0, 11)) == b"first file\n"


def test_a_pinned_etag_that_no_version_has_is_refused_before_any_byte_is_read(
    storage: S3Storage, aws_s3_client: Any, aws_bucket: str
) -> None:
    put = aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/CLIENTES_IN_0525.dat", Body=b"first\n")
    aws_s3_client.put_object(Bucket=aws_bucket, Key="incoming/CLIENTES_IN_0525.dat", Body=b"second\n")
    uri = f"s3://{aws_bucket}/incoming/CLIENTES_IN_0525.dat"
    with pytest.raises(VersionMismatch, match="keeps no version with that ETag.*versioning"):
        storage.pin(uri, ObjectVersion(etag=put["ETag"]))
    with pytest.raises(VersionMismatch, match="no longer has that version"):
        storage.pin(uri, ObjectVersion(version_id="3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"))


def test_unreachable_endpoint_error_has_no_secret(aws_bucket: str) -> None:
    # Discard port: connection refused. One attempt, so the test does not sit through backoff.
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing-secret", region_name="us-east-1"
    ).client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    storage = S3Storage(client, aws_bucket)
    uri = f"s3://{aws_bucket}/incoming/a.dat"
    for call in (
        lambda: storage.scan(uri),
        lambda: list(storage.iter_range(uri, 0, 1)),
        lambda: storage.exists(uri),
    ):
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert uri in message and "EndpointConnectionError" in message
        assert "testing-secret" not in message


def test_from_settings_is_lazy_and_picklable(aws_bucket: str, aws_s3_client: Any) -> None:
    storage = S3Storage.from_settings(load_settings())
    assert storage.bucket == aws_bucket and storage.prefix == "uploads/"
    clone = pickle.loads(pickle.dumps(storage))  # noqa: S301 (our own bytes)
    stored = clone.store(io.BytesIO(b"a|b\n"), "p.dat")
    assert storage.exists(stored.uri)
    assert "testing-secret" not in repr(storage)


def test_storage_built_from_a_client_refuses_to_pickle(storage: S3Storage) -> None:
    with pytest.raises(TypeError, match="from_settings or from_block"):
        pickle.dumps(storage)


def test_owns_only_its_bucket(storage: S3Storage, aws_bucket: str) -> None:
    assert storage.owns(f"s3://{aws_bucket}/any/key")
    assert not storage.owns("s3://another-bucket/incoming/a.dat")
    assert not storage.owns("file:///tmp/a.dat")
    assert not storage.owns(f"s3://{aws_bucket}")


def test_same_bytes_as_local_storage(storage: S3Storage, tmp_path: Any) -> None:
    data = payload(3 * MIB + 11, seed=9)
    local = LocalStorage(tmp_path)
    a = local.store(io.BytesIO(data), "CLIENTES_IN_0825.dat")
    b = storage.store(io.BytesIO(data), "CLIENTES_IN_0825.dat")
    assert (a.size, a.sha256, a.name) == (b.size, b.sha256, b.name)
    for start, end in [(0, len(data)), (123, 456789), (os.urandom(1)[0], len(data) - 1)]:
        assert b"".join(local.iter_range(a.uri, start, end, 65536)) == b"".join(
            storage.iter_range(b.uri, start, end, 65536)
        )


def test_from_settings_reads_a_source_in_another_bucket_in_place(aws_bucket: str, aws_s3_client: Any) -> None:
    other = f"{aws_bucket}-src"
    aws_s3_client.create_bucket(Bucket=other)
    aws_s3_client.put_object(Bucket=other, Key="drop/CLIENTES_IN_0425.dat", Body=b"a|b\n")
    uri = f"s3://{other}/drop/CLIENTES_IN_0425.dat"
    storage = S3Storage.from_settings(load_settings(), source=uri)
    assert storage.owns(uri) and storage.bucket == other
    assert storage.scan(uri).size == 4
    assert S3Storage.from_settings(load_settings(), source="/tmp/local.dat").bucket == aws_bucket
