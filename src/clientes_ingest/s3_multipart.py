"""A streamed S3 multipart upload: parts of ``part_size`` bytes, a single PUT when the object is small.

Memory stays at about one part whatever the object size. Requires boto3 (a client passed in).
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from clientes_ingest.storage import ObjectVersion


class MultipartUpload:
    """Buffers written bytes into parts; small objects (under one part) become a single PUT."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            # Hand the full part over and keep only the tail, instead of copying 8 MiB per part.
            part, self.buffer = self.buffer, self.buffer[self.part_size :]
            del part[self.part_size :]
            self._upload_part(part)

    def _upload_part(self, data: bytes | bytearray) -> None:
        if self.upload_id is None:
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        # Newer botocore adds a CRC32 checksum to each part; S3 then wants it echoed on completion.
        for field in (
            "ChecksumCRC32",
            "ChecksumCRC32C",
            "ChecksumSHA1",
            "ChecksumSHA256",
            "ChecksumCRC64NVME",
        ):
            if response.get(field):
                part[field] = response[field]
        self.parts.append(part)

    def complete(self) -> ObjectVersion:
        """Finish the upload and return the object's version (its ETag, and version id if kept)."""
        if self.upload_id is None:
            response = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
            self.buffer.clear()
        else:
            if self.buffer:
                part, self.buffer = self.buffer, bytearray()
                self._upload_part(part)
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
            )
            self.upload_id = None
        return ObjectVersion(response.get("VersionId") or None, str(response["ETag"]).strip('"'))

    def abort(self) -> None:
        """Drop the parts already sent, so a failed upload leaves no billable debris; never raises."""
        self.buffer.clear()
        if self.upload_id is None:
            return
        # The original error matters more; a bucket lifecycle rule cleans what an abort cannot.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        self.upload_id = None
