"""S3 storage: the ``Storage`` interface of ``clientes_ingest.storage`` over an S3 bucket.

Objects are addressed as ``s3://bucket/key``. Storing is a streamed multipart upload (8 MiB parts,
hashing as it goes, aborted on failure) to a key of its own per upload (``<prefix><upload id>/<name>``),
so a later upload of the same name never replaces it; scanning is one streamed GET; chunk reads are
ranged GETs, one per block, so memory stays at about one part or one block whatever the file size.
Every read of a pinned object names its version (``VersionId`` when the bucket keeps versions, else
``If-Match`` on its ETag), so an object overwritten under the same key is never read in place of the
version a run was started for. Client construction and error codes live in
``clientes_ingest.s3_client``, the multipart upload in ``clientes_ingest.s3_multipart``. Requires boto3
and an S3 endpoint: real AWS, LocalStack or a moto server (``CLIENTES_AWS_ENDPOINT_URL``); credentials
come from settings, a prefect-aws ``S3Bucket`` block, or boto3's default chain (e.g. IRSA on Kubernetes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from clientes_ingest.s3_client import (
    NOT_FOUND,
    PRECONDITION,
    TRANSIENT,
    VERSION_GONE,
    BlockClientFactory,
    ClientConfig,
    clients_from_settings,
    describe_error,
    error_code,
    log_retries,
    split_s3_uri,
    upload_id,
)
from clientes_ingest.s3_multipart import MultipartUpload
from clientes_ingest.storage import (
    COPY_BLOCK,
    BlockObserver,
    ObjectVersion,
    Readable,
    StorageError,
    StoredObject,
    VersionMismatch,
    hash_stream,
    safe_name,
)

# Re-exported: the trigger service and older callers import these from here.
__all__ = ["PART_SIZE", "READ_ATTEMPTS", "S3Storage", "clients_from_settings", "describe_error", "split_s3_uri"]

if TYPE_CHECKING:
    from clientes_ingest.settings import Settings

_log = logging.getLogger(__name__)
PART_SIZE = 8 * 1024 * 1024
# Transient failures while a ranged body streams are retried here, so one dropped connection does not
# cost a whole chunk retry; HTTP errors (4xx/5xx) already went through botocore's own retries.
READ_ATTEMPTS = 3


class S3Storage:
    """Objects in one bucket; uploads land under ``<prefix><name>`` (``incoming/`` by default)."""

    scheme = "s3"
    content_addressed = False  # every store is a new key (``<prefix><upload id>/<name>``)

    def __init__(
        self,
        client: Any | None,
        bucket: str,
        prefix: str = "incoming/",
        *,
        client_factory: Callable[[], Any] | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        if client is None and client_factory is None:
            raise ValueError("S3Storage needs a boto3 S3 client or a client_factory")
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self._client = client
        self._client_factory = client_factory
        self._lock = threading.Lock()
        # The version of each object this run reads (set by store, scan or pin; carried when pickled to
        # chunk tasks): every later read names it, so an object overwritten under the same key mid-job
        # is never mixed in or read instead.
        self._pins: dict[str, ObjectVersion] = {}

    @classmethod
    def from_settings(cls, settings: Settings, source: str | None = None) -> S3Storage:
        """Bucket, prefix, endpoint and credentials from ``CLIENTES_*`` settings.

        An ``s3://`` ``source`` in another bucket selects that bucket, so the source is read in place.
        """
        factory = ClientConfig(
            endpoint_url=settings.aws_endpoint_url,
            region_name=settings.aws_region,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
        )
        bucket = split_s3_uri(source)[0] if source and source.startswith("s3://") else settings.s3_bucket
        return cls(None, bucket, settings.s3_upload_prefix, client_factory=factory)

    @classmethod
    def from_block(cls, block: Any, prefix: str | None = None) -> S3Storage:
        """From a prefect-aws ``S3Bucket`` block; its ``bucket_folder`` is the upload prefix."""
        folder = prefix if prefix is not None else (block.bucket_folder or "incoming/")
        if folder and not folder.endswith("/"):
            folder += "/"
        return cls(None, block.bucket_name, folder, client_factory=BlockClientFactory(block.credentials))

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    assert self._client_factory is not None
                    self._client = log_retries(self._client_factory())
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        if self._client_factory is None:
            raise TypeError(
                "an S3Storage built from a client cannot be pickled; use from_settings or from_block"
            )
        state = self.__dict__.copy()
        state["_client"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def owns(self, uri: str) -> bool:
        if not uri.startswith("s3://"):
            return False
        try:
            bucket, _ = split_s3_uri(uri)
        except StorageError:
            return False
        return bucket == self.bucket

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3_uri(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return False
            raise StorageError(f"cannot check {uri}: {describe_error(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot check {uri}: {describe_error(exc)}") from exc
        return True

    def delete(self, uri: str) -> None:
        """Delete ``uri`` with every version the bucket keeps of it (a plain delete on a versioned bucket
        would only hide the bytes behind a delete marker: retention must remove the personal data)."""
        bucket, key = split_s3_uri(uri)
        try:
            versions = [{"Key": key, "VersionId": entry["VersionId"]}
                        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                                                Prefix=key)
                        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                        if entry["Key"] == key]
            for start in range(0, len(versions), 1000):
                response = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": versions[start:start + 1000], "Quiet": True})
                if response.get("Errors"):
                    error = response["Errors"][0]
                    raise StorageError(f"cannot delete {uri} version {error.get('VersionId')}: "
                                       f"{error.get('Code')} {error.get('Message', '')}".strip())
            if not versions:  # a bucket without versioning lists none
                self.client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot delete {uri}: {describe_error(exc)}") from exc
        self._pins.pop(uri, None)

    def store(self, source: Readable, name: str, on_block: BlockObserver | None = None) -> StoredObject:
        name = safe_name(name)
        key = f"{self.prefix}{upload_id()}/{name}"
        uri = self.uri(key)
        upload = MultipartUpload(self.client, self.bucket, key, self.part_size)
        try:
            size, sha = hash_stream(source.read, on_block, upload.write)
            version = upload.complete()
        except BaseException as exc:
            upload.abort()
            if isinstance(exc, ClientError | BotoCoreError):
                raise StorageError(f"cannot upload to {uri}: {describe_error(exc)}") from exc
            raise
        self._pins[uri] = version
        return StoredObject(uri=uri, name=name, size=size, sha256=sha, version=version)

    def scan(self, uri: str, on_block: BlockObserver | None = None) -> StoredObject:
        bucket, key = split_s3_uri(uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, **self._read_args(uri))
            body = response["Body"]
            try:
                size, sha = hash_stream(body.read, on_block)
            finally:
                body.close()
        except ClientError as exc:
            raise self._read_error(uri, exc) from exc
        except TRANSIENT as exc:
            raise StorageError(f"cannot read {uri}: {describe_error(exc)}") from exc
        version = ObjectVersion.of(response.get("VersionId"), response.get("ETag"))
        if uri not in self._pins and version is not None:
            self._pins[uri] = version
        return StoredObject(uri=uri, name=key.rsplit("/", 1)[-1], size=size, sha256=sha, version=version)

    def pin(self, uri: str, version: ObjectVersion) -> ObjectVersion:
        """Pin ``uri`` to ``version``; an ETag alone is resolved to the version id that has it, if any.

        So an event or request naming an ETag still reads its bytes after the key was uploaded again,
        as long as the bucket keeps versions (``clientes-ingest aws init`` turns versioning on).
        """
        bucket, key = split_s3_uri(uri)
        if version.version_id:
            head = self._head(uri, VersionId=version.version_id)
            found = ObjectVersion.of(version.version_id, head.get("ETag")) if head is not None else None
            if found is None or (version.etag and found.etag != version.etag):
                raise VersionMismatch(f"cannot read {uri} {version}: the bucket no longer has that version; "
                                      "its bytes are not read")
        else:
            head = self._head(uri)
            current = ObjectVersion.of(head.get("VersionId") if head else None, head.get("ETag") if head else None)
            found = current if current is not None and current.etag == version.etag else \
                self._version_with_etag(uri, bucket, key, str(version.etag))
            if found is None:
                raise VersionMismatch(
                    f"cannot read {uri} with ETag {version.etag}: the object was replaced (ETag now "
                    f"{current.etag if current else 'none: deleted'}) and the bucket keeps no version with that "
                    "ETag; its bytes are not read. Turn on bucket versioning (clientes-ingest aws init) so "
                    "same-name uploads keep every version, and upload the file again")
        self._pins[uri] = found
        return found

    def _head(self, uri: str, **extra: str) -> dict[str, Any] | None:
        bucket, key = split_s3_uri(uri)
        try:
            return dict(self.client.head_object(Bucket=bucket, Key=key, **extra))
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND | VERSION_GONE:
                return None
            raise StorageError(f"cannot check {uri}: {describe_error(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot check {uri}: {describe_error(exc)}") from exc

    def _version_with_etag(self, uri: str, bucket: str, key: str, etag: str) -> ObjectVersion | None:
        """The newest kept version of ``key`` whose ETag is ``etag`` (None when versioning is off)."""
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
            for page in pages:
                for entry in page.get("Versions", []):
                    if entry["Key"] == key and str(entry.get("ETag", "")).strip('"') == etag:
                        return ObjectVersion.of(entry.get("VersionId"), etag)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot list the versions of {uri}: {describe_error(exc)}") from exc
        return None

    def _read_args(self, uri: str) -> dict[str, str]:
        """What a GET of ``uri`` must name: its pinned version id, else its pinned ETag (If-Match)."""
        pinned = self._pins.get(uri)
        if pinned is None:
            return {}
        if pinned.version_id and pinned.version_id != "null":
            return {"VersionId": pinned.version_id}
        return {"IfMatch": f'"{pinned.etag}"'} if pinned.etag else {}

    def _read_error(self, uri: str, exc: ClientError) -> StorageError:
        code = error_code(exc)
        if code in PRECONDITION or (code in VERSION_GONE and uri in self._pins):
            return VersionMismatch(f"cannot read {uri}: it is no longer the version the run was started for "
                                   f"({self._pins.get(uri)}); its bytes are not read: re-run the job for the new file")
        if code in NOT_FOUND:
            return StorageError(f"cannot read {uri}: no such object")
        return StorageError(f"cannot read {uri}: {describe_error(exc)}")

    def iter_range(self, uri: str, start: int, end: int, block_size: int = COPY_BLOCK) -> Iterator[bytes]:
        bucket, key = split_s3_uri(uri)
        if start < 0 or end < start or block_size <= 0:
            raise ValueError(f"invalid range [{start}, {end}) with block size {block_size}")
        position = start
        while position < end:
            stop = min(position + block_size, end)
            block = self._get_range(uri, bucket, key, position, stop)
            position += len(block)
            yield block

    def _get_range(self, uri: str, bucket: str, key: str, start: int, stop: int) -> bytes:
        """One ranged GET of ``[start, stop)``, read fully (one block), retried on a dropped stream."""
        extra = self._read_args(uri)
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                response = self.client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}", **extra
                )
                body = response["Body"]
                try:
                    block: bytes = body.read()
                finally:
                    body.close()
            except ClientError as exc:
                code = error_code(exc)
                if code in {"InvalidRange", "416"}:
                    raise StorageError(f"{uri} is shorter than expected: no bytes at offset {start}") from exc
                if code in NOT_FOUND | PRECONDITION | VERSION_GONE:
                    raise self._read_error(uri, exc) from exc
                raise StorageError(f"cannot read {uri} bytes {start}-{stop - 1}: {describe_error(exc)}") from exc
            except TRANSIENT as exc:
                if attempt < READ_ATTEMPTS:
                    _log.warning("S3 read of %s bytes %d-%d failed (%s); retrying (%d of %d)", uri, start, stop - 1,
                                 describe_error(exc), attempt + 1, READ_ATTEMPTS)
                if attempt == READ_ATTEMPTS:
                    raise StorageError(
                        f"cannot read {uri} bytes {start}-{stop - 1} "
                        f"after {attempt} attempts: {describe_error(exc)}"
                    ) from exc
                continue
            if len(block) != stop - start:
                raise StorageError(
                    f"{uri} is shorter than expected: "
                    f"got {len(block)} bytes at offset {start}, wanted {stop - start}"
                )
            return block
        raise AssertionError("unreachable")  # the loop either returns or raises

