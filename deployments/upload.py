"""Streaming multipart upload for the webhook API: the ``file`` part of a request body is read as it
arrives, never spooled or held whole, and handed to ``Storage.store`` as a file-like object.

Also the API's error type (``ApiError``: answered as ``{"error", "detail"}`` with its status).
Requires: python-multipart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from clientes_ingest.storage import StorageError, safe_name

ENVELOPE_SLACK = 64 * 1024  # multipart boundaries and part headers around the file
READ_TARGET = 1024 * 1024  # bytes an upload read returns at most (storage asks for 8 MiB blocks)


class ApiError(Exception):
    """An error answered as ``{"error": message, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.headers = status, message, detail, headers


class UploadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload larger than the limit of {limit} bytes",
                         "raise CLIENTES_API_MAX_UPLOAD_BYTES or split the file")


_CONTROL = re.compile(r"[\x00-\x1f\x7f{}]")


class UploadReader:
    """A file-like ``read(n)`` over the ``file`` part of a multipart body pulled chunk by chunk.

    ``pull()`` returns the next body chunk, or ``None`` at the end. Only the bytes of the part being read
    (at most one ``read`` size plus one body chunk) are held. Exceeding ``limit`` raises 413 from ``read``,
    so the storage aborts and deletes the partial object.
    """

    def __init__(self, pull: Callable[[], bytes | None], boundary: bytes, limit: int) -> None:
        self._pull = pull
        self.limit = limit
        self.body_bytes = 0
        self.file_bytes = 0
        self.filename: str | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._state: Literal["before", "file", "after"] = "before"
        self._in_file_part = False
        self._ended = False
        self._buffer = bytearray()
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_end": self._end,
        })

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and self._state == "before":
            raw = options.get(b"filename")
            if raw is None:
                raise ApiError(422, "the file part has no filename",
                               'send it as a file, e.g. curl -F "file=@CLIENTES_IN_0425.dat"')
            self.filename = raw.decode("utf-8", "replace")
            self._state, self._in_file_part = "file", True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file_part:
            return  # other form fields are ignored, and never held
        self.file_bytes += end - start
        if self.file_bytes > self.limit:
            raise UploadTooLarge(self.limit)
        self._buffer += data[start:end]

    def _part_end(self) -> None:
        if self._in_file_part:
            self._in_file_part, self._state = False, "after"

    def _end(self) -> None:
        self._ended = True

    def _feed_next(self) -> bool:
        """Parse one more body chunk; False when the body has ended."""
        chunk = self._pull()
        if chunk is None:
            if not self._ended:
                raise ApiError(400, "the multipart body ended early (truncated upload)",
                               "send the whole body, ending with the closing boundary")
            return False
        self.body_bytes += len(chunk)
        if self.body_bytes > self.limit + ENVELOPE_SLACK:
            raise UploadTooLarge(self.limit)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:  # the client's bytes are wrong: a 400, not a server error
            raise ApiError(400, "malformed multipart body", f"{exc}; send the file as the form field \"file\", "
                                'e.g. curl -F "file=@CLIENTES_IN_0425.dat"') from None
        return True

    def open_file(self) -> str:
        """Parse up to the start of the ``file`` part; its client-side filename."""
        while self._state == "before":
            if not self._feed_next():
                raise ApiError(422, "no file in the upload", 'send it as the multipart field "file"')
        assert self.filename is not None
        return self.filename

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the file; like a raw stream it may return fewer, ``b""`` only at its end.

        Reads return once ``READ_TARGET`` bytes are buffered, so an 8 MiB ``read`` does not hold 8 MiB here.
        """
        want = min(size, READ_TARGET) if size > 0 else READ_TARGET
        while len(self._buffer) < want and self._state == "file" and self._feed_next():
            pass
        with memoryview(self._buffer) as view:
            data = bytes(view[:want])
        del self._buffer[:want]
        return data

    def drain(self) -> None:
        """Read the rest of the body (other fields, closing boundary), still within the limit."""
        while self._feed_next():
            pass


def upload_name(client_name: str) -> str:
    """The stored name of an upload: its base name only, no control characters or template braces."""
    try:
        name = safe_name(client_name)
    except StorageError as exc:
        raise ApiError(422, str(exc)) from None
    if _CONTROL.search(name) or len(name.encode()) > 255:
        raise ApiError(422, f"invalid file name {name!r}: use letters, digits, '.', '_' or '-' "
                            f"(e.g. CLIENTES_IN_0425.dat), at most 255 bytes")
    return name
