"""A run reads exactly the bytes it was started for: an upload planned while it was stored is loaded from
that plan without reading the whole file again, and a job whose stored bytes changed (or are not the
content it was registered for) fails with a clear message and loads nothing (Prefect test harness)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.loading import count, rows

from clientes_ingest import job_queries, jobs, staging
from clientes_ingest.db import Database, clientes, ingest_rejects
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage
from flows.ingest import ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHUNK = 40 * 1024


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", sqlite_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    db = Database(sqlite_url)
    db.ensure_schema()
    return db


@pytest.fixture
def upload(tmp_path: Path) -> jobs.StagedFile:
    """What ``POST /process`` keeps of an upload: stored, hashed and planned in one pass."""
    path = tmp_path / "CLIENTES_IN_0525.dat"
    generate(path, lines=2000, seed=31)
    return staging.stage_source(str(path), LocalStorage(tmp_path / "store"), CHUNK)


class StorageReads:
    """Counts what every LocalStorage in this process reads: whole-object scans and ranged bytes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scans: list[str] = []
        self.range_bytes = 0
        real_scan, real_range = LocalStorage.scan, LocalStorage.iter_range

        def scan(storage: LocalStorage, uri: str, on_block: Any = None) -> Any:
            self.scans.append(uri)
            return real_scan(storage, uri, on_block)

        def iter_range(storage: LocalStorage, uri: str, start: int, end: int, block_size: int = 1 << 20
                       ) -> Iterator[bytes]:
            for block in real_range(storage, uri, start, end, block_size):
                self.range_bytes += len(block)
                yield block

        monkeypatch.setattr(LocalStorage, "scan", scan)
        monkeypatch.setattr(LocalStorage, "iter_range", iter_range)


def test_an_upload_planned_at_upload_time_is_loaded_without_a_second_read(
    env: Database, upload: jobs.StagedFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert upload.version is not None and len(upload.chunks) > 3
    job_id = jobs.create_pending_job(env.engine, upload.uri, upload.name, staged=upload)
    reads = StorageReads(monkeypatch)

    result = ingest_clientes(source=upload.uri, job_id=job_id, sha256=upload.sha256, etag=upload.version.etag,
                             chunk_size="40KB")

    assert (result.job_id, result.action, result.status) == (job_id, "load", "completed_with_rejects")
    assert reads.scans == []  # no second pass to hash and plan it
    assert reads.range_bytes == upload.size  # each byte read once, by its chunk
    assert result.chunk_count == len(upload.chunks) and result.sha256 == upload.sha256
    assert result.rows_loaded + result.rows_rejected + result.blank_lines == 2000
    # The same rows as a run that staged the file itself.
    source = tmp_path / "again" / upload.name
    source.parent.mkdir()
    source.write_bytes(Path(upload.uri.removeprefix("file://")).read_bytes())
    direct = ingest_clientes(source=str(source), force=True, chunk_size="40KB")
    strip = [row[1:] for row in rows(env, job_id)]
    assert strip == [row[1:] for row in rows(env, direct.job_id)] and len(strip) > 1000


def test_bytes_changed_under_a_planned_upload_fail_its_job_and_load_nothing(
    env: Database, upload: jobs.StagedFile
) -> None:
    assert upload.version is not None
    job_id = jobs.create_pending_job(env.engine, upload.uri, upload.name, staged=upload)
    stored = Path(upload.uri.removeprefix("file://"))
    stored.write_bytes(stored.read_bytes().replace(b"Activo", b"Activa"))  # same size, other bytes
    os.utime(stored, ns=(1, 1))

    with pytest.raises(Exception, match="changed since the run was asked for"):
        ingest_clientes(source=upload.uri, job_id=job_id, sha256=upload.sha256, etag=upload.version.etag)
    job = job_queries.get_job(env.engine, job_id)
    assert job.status == "failed" and "changed since the run was asked for" in (job.error or "")
    assert "its bytes are not read" in (job.error or "")
    assert count(env, clientes) == 0 and count(env, ingest_rejects) == 0


def test_a_job_registered_for_other_content_fails_and_loads_nothing(
    env: Database, upload: jobs.StagedFile, tmp_path: Path
) -> None:
    # Registered for the upload's content, but the object it names now holds another file (no plan kept).
    other = tmp_path / "other" / upload.name
    other.parent.mkdir()
    generate(other, lines=500, seed=32)
    job_id = jobs.create_pending_job(env.engine, other.as_uri(), upload.name)

    with pytest.raises(Exception, match="is not the file its job was registered for"):
        ingest_clientes(source=str(other), job_id=job_id, sha256=upload.sha256)
    job = job_queries.get_job(env.engine, job_id)
    assert job.status == "failed" and f"the job expects {upload.sha256}" in (job.error or "")
    assert count(env, clientes) == 0 and count(env, ingest_rejects) == 0
