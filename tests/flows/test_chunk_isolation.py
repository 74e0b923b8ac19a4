"""CLIENTES_CHUNK_ISOLATION=subprocess: chunks load in lean, reused worker processes without Prefect, with
exactly the rows and rejects of the default (thread) mode; a chunk's failure, or a worker's death, is a
clear error and the next chunk gets a fresh worker."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import rejects, rows

from clientes_ingest import chunk_worker
from clientes_ingest.chunk_worker import ChunkWorkerError, WorkerPool, run_chunk
from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import Database, ingest_chunks
from clientes_ingest.devtools.generator import generate
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
    threaded = ingest_clientes(source=str(path), chunk_size="64KiB")
    monkeypatch.setenv("CLIENTES_CHUNK_ISOLATION", "subprocess")
    isolated = ingest_clientes(source=str(path), chunk_size="64KiB", force=True)
    assert isolated.status == "completed_with_rejects" and isolated.chunk_count > 2
    db = Database(db_url)
    assert rows(db, isolated.job_id) == rows(db, threaded.job_id) != []
    assert rejects(db, isolated.job_id) == rejects(db, threaded.job_id) != []
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        peaks = conn.execute(sa.select(c.peak_rss_bytes).where(c.job_id == isolated.job_id)).scalars().all()
    # Each chunk process records its own peak: a process without Prefect, bounded by the block size.
    assert peaks and all(0 < peak < 256 * MiB for peak in peaks)


def test_a_failing_chunk_process_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://app:Chunk-S3cret@127.0.0.1:1/clientes")
    with pytest.raises(ChunkWorkerError, match=r"chunk 0 of job 7 failed in its worker process: "
                                               r"OperationalError: .*Connection refused") as info:
        run_chunk(db, LocalStorage(tmp_path), 7, (tmp_path / "x.dat").as_uri(), ChunkSpec(0, 0, 10, 1, 1),
                  block_size=MiB, max_line_bytes=MiB)
    assert "Chunk-S3cret" not in str(info.value)


def test_workers_are_reused_across_chunks_and_a_dead_idle_worker_is_replaced(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    db.ensure_schema()
    chunk_worker.shutdown_workers()
    uri = (tmp_path / "missing.dat").as_uri()
    for _ in range(2):  # a failed chunk leaves its worker usable
        with pytest.raises(ChunkWorkerError, match="chunk 0 of job 999"):
            run_chunk(db, LocalStorage(tmp_path), 999, uri, ChunkSpec(0, 0, 10, 1, 1), block_size=MiB,
                      max_line_bytes=MiB)
    [pid] = chunk_worker.worker_pids()  # one worker served both calls
    os.kill(pid, signal.SIGKILL)  # killed while idle: the next chunk runs on a new worker, not an error
    with pytest.raises(ChunkWorkerError, match="chunk 0 of job 999 failed in its worker process: No"):
        run_chunk(db, LocalStorage(tmp_path), 999, uri, ChunkSpec(0, 0, 10, 1, 1), block_size=MiB,
                  max_line_bytes=MiB)
    [new_pid] = chunk_worker.worker_pids()
    assert new_pid != pid
    chunk_worker.shutdown_workers()
    assert chunk_worker.worker_pids() == []


def test_a_worker_that_dies_mid_chunk_is_a_clear_error_with_its_exit_code() -> None:
    """The error text only, with a stand-in worker that loads nothing; a real worker killed during its COPY,
    retried to exactly once, is tests/faults/test_fault_worker.py."""
    dying = WorkerPool([sys.executable, "-c", "import sys; sys.stdin.buffer.read(8); "
                        "sys.stderr.write('worker out of memory\\n'); sys.exit(137)"])
    with pytest.raises(ChunkWorkerError, match=r"chunk 3 of job 5 failed in its worker process \(exit 137\): "
                                               r"worker out of memory"):
        dying.run(b"request", "chunk 3 of job 5")
    assert dying.idle_pids() == []  # a dead worker is never handed out again


# A worker running the real serve loop whose loader answers its first chunk and is SIGKILLed in its second.
_DIES_IN_ITS_SECOND_CHUNK = """
import os, signal
from clientes_ingest import chunk_worker, loader
calls = []
def load_chunk(*_args, **_kwargs):
    calls.append(os.getpid())
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return len(calls)
loader.load_chunk = load_chunk
chunk_worker.main()
"""


def test_a_reused_worker_killed_mid_chunk_is_an_error_not_a_silent_second_run() -> None:
    """A worker killed after it took a chunk (not while idle) is the task's ChunkWorkerError, to be retried by
    the task's policy: the pool must not send the chunk again to a new worker by itself."""
    pool = WorkerPool([sys.executable, "-c", _DIES_IN_ITS_SECOND_CHUNK])
    request = pickle.dumps((None,) * 8)
    assert pool.run(request, "chunk 1 of job 5") == 1
    [pid] = pool.idle_pids()
    with pytest.raises(ChunkWorkerError, match=r"chunk 2 of job 5 failed in its worker process \(exit -9\)"):
        pool.run(request, "chunk 2 of job 5")
    assert not _alive(pid)
    assert pool.idle_pids() == []  # no new worker ran chunk 2 behind the error
    pool.shutdown()


def test_a_worker_exits_when_its_parent_is_killed_even_while_busy(tmp_path: Path) -> None:
    """The watchdog every worker starts: a busy orphan (here: sleeping, never reading its stdin) exits."""
    import subprocess
    import time

    grandchild = ("import sys, time; from clientes_ingest.chunk_worker import exit_with_parent; "
                  "exit_with_parent(int(sys.argv[1]), every_seconds=0.1); time.sleep(60)")
    middle = (f"import os, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {grandchild!r}, "
              "str(os.getpid())]); print(p.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker_pid):
        time.sleep(0.1)
    assert not _alive(worker_pid), "the orphaned worker kept running"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return not any(line.startswith("State:") and "Z" in line for line in status)
    except FileNotFoundError:
        return False
