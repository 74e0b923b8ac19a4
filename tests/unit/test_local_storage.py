"""LocalStorage.store: a regular file is copied by the kernel (sendfile) and the copy hashed; any other
source (upload stream, pipe) is streamed through Python. Both give the same object, hash and observed
blocks, from the source's current position on; a refused kernel copy falls back to streaming."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
from pathlib import Path

import pytest

from clientes_ingest import storage as storage_module
from clientes_ingest.storage import LocalStorage, ObjectVersion, VersionMismatch

DATA = b"".join(f"Ana|Perez|{i}|Activo|1/2/2020|true|false\n".encode() for i in range(1, 50_001))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "CLIENTES_IN_0125.dat"
    path.parent.mkdir()
    path.write_bytes(DATA)
    return path


def stored_bytes(uri: str) -> bytes:
    return Path(uri.removeprefix("file://")).read_bytes()


def check(store: LocalStorage, handle: io.BufferedIOBase | io.BytesIO, expected: bytes) -> None:
    seen: list[bytes] = []
    stored = store.store(handle, "CLIENTES_IN_0125.dat", on_block=seen.append)
    assert stored.size == len(expected) and stored.sha256 == hashlib.sha256(expected).hexdigest()
    assert b"".join(seen) == expected  # the chunk planner sees every byte, in order
    assert stored_bytes(stored.uri) == expected
    assert stored.uri.endswith(f"/objects/{stored.sha256}/CLIENTES_IN_0125.dat")
    assert not list((store.root / "tmp").iterdir())  # nothing left behind


def test_a_regular_file_is_copied_by_the_kernel(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(storage_module.os, "sendfile", counting)
    monkeypatch.setattr(storage_module, "KERNEL_COPY_CHUNK", 100_000)  # several calls, each partial
    with source.open("rb") as handle:
        check(LocalStorage(tmp_path / "store"), handle, DATA)
    assert len(calls) > 10


def test_a_partly_read_file_is_stored_from_its_position(source: Path, tmp_path: Path) -> None:
    with source.open("rb") as handle:
        handle.read(10)  # Python's read-ahead buffer now holds far more than 10 bytes
        check(LocalStorage(tmp_path / "store"), handle, DATA[10:])


def test_a_stream_and_a_pipe_are_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> int:
        raise AssertionError("sendfile must not be used for a non-regular source")

    monkeypatch.setattr(storage_module.os, "sendfile", refuse)
    store = LocalStorage(tmp_path / "store")
    check(store, io.BytesIO(DATA), DATA)
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_fd, DATA[:65536]), os.close(write_fd)))
    writer.start()
    with os.fdopen(read_fd, "rb") as pipe:
        check(store, pipe, DATA[:65536])
    writer.join()


def test_a_refused_kernel_copy_falls_back_to_streaming(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.sendfile
    calls = 0

    def fail_midway(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise OSError(22, "Invalid argument")
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(storage_module.os, "sendfile", fail_midway)
    monkeypatch.setattr(storage_module, "KERNEL_COPY_CHUNK", 100_000)
    with source.open("rb") as handle:
        check(LocalStorage(tmp_path / "store"), handle, DATA)  # no bytes twice, none missing


def test_a_stored_object_is_pinned_and_a_rewrite_is_refused_not_read(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    stored = store.store(io.BytesIO(DATA), "CLIENTES_IN_0125.dat")
    assert stored.version is not None and stored.version.etag == f"{len(DATA)}-{os.stat(stored.uri[7:]).st_mtime_ns}"
    # The same content stored again keeps the object (and its version): a run pinned to it stays valid.
    again = store.store(io.BytesIO(DATA), "CLIENTES_IN_0125.dat")
    assert (again.uri, again.version) == (stored.uri, stored.version)
    run = pickle.loads(pickle.dumps(LocalStorage(store.root)))  # noqa: S301 - a run's own storage handle
    run.pin(stored.uri, stored.version)
    assert b"".join(run.iter_range(stored.uri, 0, 10)) == DATA[:10]

    path = Path(stored.uri.removeprefix("file://"))
    path.write_bytes(DATA.replace(b"Perez", b"Gomez"))  # same size, other bytes
    os.utime(path, ns=(1, 1))
    with pytest.raises(VersionMismatch, match="changed while its job was loading"):
        list(run.iter_range(stored.uri, 0, 10))
    with pytest.raises(VersionMismatch, match="changed since the run was asked for"):
        LocalStorage(store.root).pin(stored.uri, stored.version)
    assert LocalStorage(store.root).pin(stored.uri, ObjectVersion()).etag == f"{len(DATA)}-1"
