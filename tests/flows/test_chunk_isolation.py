"""CLIENTES_CHUNK_ISOLATION=subprocess: each chunk loads in a lean child process without Prefect, with
exactly the rows and rejects of the default (thread) mode, and a child's failure is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import rejects, rows

from clientes_ingest.chunk_worker import ChunkWorkerError, run_chunk
from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import Database, ingest_chunks
from clientes_ingest.generator import generate
from clientes_ingest.storage import LocalStorage
from flows.ingest import ingest_clientes

MiB = 1024 * 1024


@pytest.mark.usefixtures("prefect_harness")
def test_subprocess_isolation_loads_exactly_what_threads_load(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=3000, seed=21)
    threaded = ingest_clientes(source=str(path), chunk_size="64KB")
    monkeypatch.setenv("CLIENTES_CHUNK_ISOLATION", "subprocess")
    isolated = ingest_clientes(source=str(path), chunk_size="64KB", force=True)
    assert isolated["status"] == "completed_with_rejects" and isolated["chunk_count"] > 2
    db = Database(db_url)
    assert rows(db, isolated["job_id"]) == rows(db, threaded["job_id"]) != []
    assert rejects(db, isolated["job_id"]) == rejects(db, threaded["job_id"]) != []
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        peaks = conn.execute(sa.select(c.peak_rss_bytes).where(c.job_id == isolated["job_id"])).scalars().all()
    # Each chunk process records its own peak: a process without Prefect, bounded by the block size.
    assert peaks and all(0 < peak < 256 * MiB for peak in peaks)


def test_a_failing_chunk_process_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://app:Chunk-S3cret@127.0.0.1:1/clientes")
    with pytest.raises(ChunkWorkerError, match=r"chunk 0 of job 7 failed in its worker process \(exit 1\)") as info:
        run_chunk(db, LocalStorage(tmp_path), 7, (tmp_path / "x.dat").as_uri(), ChunkSpec(0, 0, 10, 1, 1),
                  block_size=MiB, max_line_bytes=MiB)
    assert "Chunk-S3cret" not in str(info.value)
