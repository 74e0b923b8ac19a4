"""The reject guard against real databases (SQLite and PostgreSQL), without Prefect: garbage files end
``rejected_file`` with no row kept, a normal file and a good file with a bad start still load, the
stored-rejects cap keeps counts exact, and a chunk never commits into a refused job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.garbage import bad_start, comma_delimited, random_bytes, x_lines
from support.loading import count, load_file, rejects, rows, stage

from clientes_ingest import job_queries, jobs, loader, rejection, report
from clientes_ingest.db import Database, clientes, ingest_chunks, ingest_rejects
from clientes_ingest.devtools.generator import generate
from clientes_ingest.guard import RejectPolicy
from clientes_ingest.storage import LocalStorage

GARBAGE = {"random_bytes": (random_bytes, ("encoding", "field_count")),
           "comma_delimited": (comma_delimited, ("field_count",)), "x_lines": (x_lines, ("field_count",))}


def chunk_statuses(db: Database, job_id: int) -> list[str]:
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        return list(conn.execute(sa.select(c.status).where(c.job_id == job_id).order_by(c.chunk_no)).scalars())


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_a_garbage_file_is_refused_early_and_keeps_no_row(db_url: str, tmp_path: Path, kind: str) -> None:
    make, reasons = GARBAGE[kind]
    path = make(tmp_path / "CLIENTES_IN_0425.dat")
    db = Database(db_url)
    registration = load_file(db, path, tmp_path / "store", chunk_size=64 * 1024, block_size=16 * 1024)
    job = job_queries.get_job(db.engine, registration.job_id)
    assert job.status == "rejected_file"
    assert job.error is not None and "non-blank lines rejected, above the limit of 50%" in job.error
    assert "top reasons: " + reasons[0] in job.error or "top reasons: " + reasons[-1] in job.error
    assert "stopped early" in job.error  # decided before the end of the file
    assert count(db, clientes) == 0 and job.rows_loaded == 0  # no row of a refused file is kept
    assert "pending" in chunk_statuses(db, registration.job_id)  # chunks after the verdict never loaded
    # Not amplified: the verdict came before half of the file was written out as rejects.
    assert count(db, ingest_rejects) <= job.total_lines / 2
    if kind == "x_lines":
        assert count(db, ingest_rejects) < 20_000, "the 1 MB of x lines was written out as rejects"
    assert job.rows_rejected == count(db, ingest_rejects)  # what is stored is what is counted
    again = jobs.register_job(db.engine, stage(path, LocalStorage(tmp_path / "store"), 64 * 1024))
    assert again.action == jobs.Action.REJECTED and again.job_id == registration.job_id


def test_a_small_garbage_file_is_refused_at_the_end_and_its_rows_removed(db_url: str, tmp_path: Path) -> None:
    # 40 non-blank lines, 24 of them corrupt (60%), and 20 blank ones: too few lines to stop early, and the
    # rejects never exceed half of all 60 lines, so only the final verdict (blank lines excluded) refuses it.
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=16, seed=4, error_rate=0.0)
    path.write_bytes(path.read_bytes() + b"x|y\n\n" * 20 + b"x|y\n" * 4)
    db = Database(db_url)
    registration = load_file(db, path, tmp_path / "store", chunk_size=256, block_size=256)
    job = job_queries.get_job(db.engine, registration.job_id)
    assert job.status == "rejected_file" and job.rows_rejected == 24 and job.rows_loaded == 0
    assert job.error is not None and job.error.startswith("rejected_file: 60.0% of 40 non-blank lines rejected")
    assert "field_count 60.0%" in job.error and "stopped early" not in job.error
    assert set(chunk_statuses(db, registration.job_id)) == {"done"}
    assert count(db, clientes) == 0 and len(rejects(db)) == 24  # rows removed, rejects kept for inspection


def test_the_normal_generated_file_with_20_percent_rejects_still_completes(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=20_000, seed=9)
    db = Database(db_url)
    registration = load_file(db, path, tmp_path / "store", chunk_size=128 * 1024, block_size=32 * 1024)
    job = job_queries.get_job(db.engine, registration.job_id)
    assert job.status == "completed_with_rejects" and job.error is None
    assert 0.15 < job.rows_rejected / 20_000 < 0.25
    assert count(db, clientes) == job.rows_loaded == 20_000 - job.rows_rejected


def test_a_good_file_with_a_bad_first_chunk_is_not_misjudged(db_url: str, tmp_path: Path) -> None:
    # The first 12,000 lines (more than the early minimum) are 80% corrupt, the file 30%: it must load.
    path = bad_start(tmp_path / "CLIENTES_IN_0425.dat")
    db = Database(db_url)
    registration = load_file(db, path, tmp_path / "store", chunk_size=1 << 20, block_size=64 * 1024)
    job = job_queries.get_job(db.engine, registration.job_id)
    assert job.status == "completed_with_rejects", job.error
    assert count(db, clientes) == job.rows_loaded > 40_000


def test_stored_rejects_are_capped_and_counts_stay_exact(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=4000, seed=12)
    db = Database(db_url)
    full = load_file(db, path, tmp_path / "store", chunk_size=20_000, block_size=4096)
    expected = job_queries.get_job(db.engine, full.job_id)
    assert expected.rejects_not_stored == 0 and expected.rows_rejected > 500
    capped = load_file(db, path, tmp_path / "store", chunk_size=20_000, block_size=4096, force=True,
                       policy=RejectPolicy(max_stored=100))
    job = job_queries.get_job(db.engine, capped.job_id)
    assert len(rejects(db, capped.job_id)) == 100
    assert rejects(db, capped.job_id) == rejects(db, full.job_id)[:100]  # loaded in order: the first 100 lines
    assert job.rows_rejected == expected.rows_rejected
    assert job.rejects_by_reason == expected.rejects_by_reason
    assert job.rejects_not_stored == expected.rows_rejected - 100
    assert rows(db, capped.job_id) == rows(db, full.job_id)
    assert ("Rejects not stored", f"{job.rejects_not_stored:,} counted but not stored (over "
            "CLIENTES_MAX_STORED_REJECTS)") in report.summary_rows(job)


@pytest.mark.postgres
def test_the_cap_holds_when_chunks_commit_at_once(pg_url: str, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=6000, seed=13)
    db = Database(pg_url)
    storage = LocalStorage(tmp_path / "store")
    registration = jobs.register_job(db.engine, stage(path, storage, 16_000))
    policy = RejectPolicy(max_stored=150)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def load(chunks: list[object]) -> None:
        try:
            barrier.wait()
            for chunk in chunks:
                loader.load_chunk(db, storage, registration.job_id, registration.uri, chunk,  # type: ignore[arg-type]
                                  block_size=4096, max_line_bytes=1 << 20, policy=policy)
        except BaseException as exc:
            errors.append(exc)

    chunks = list(registration.pending)
    threads = [threading.Thread(target=load, args=(chunks[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    job = jobs.finalize_job(db.engine, registration.job_id, policy)
    assert job.status == "completed_with_rejects"
    assert count(db, ingest_rejects) == 150  # every chunk started with room for 150: the commits trimmed them
    assert job.rejects_not_stored == job.rows_rejected - 150
    assert sum(job.rejects_by_reason.values()) == job.rows_rejected


def test_chunks_of_a_refused_job_load_nothing(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=500, seed=14)
    db = Database(db_url)
    db.ensure_schema()
    storage = LocalStorage(tmp_path / "store")
    registration = jobs.register_job(db.engine, stage(path, storage, 8000))
    first, second, *_ = registration.pending
    loader.load_chunk(db, storage, registration.job_id, registration.uri, first, block_size=4096,
                      max_line_bytes=1 << 20)
    assert count(db, clientes) > 0
    assert rejection.reject_file(db.engine, registration.job_id, "refused by the test")
    assert count(db, clientes) == 0  # the committed chunk's rows went with the verdict
    result = loader.load_chunk(db, storage, registration.job_id, registration.uri, second, block_size=4096,
                               max_line_bytes=1 << 20)
    assert result.stopped and count(db, clientes) == 0
    assert chunk_statuses(db, registration.job_id)[:2] == ["done", "pending"]


class RefusingStorage(LocalStorage):
    """Local storage that refuses the job (as a concurrent chunk's verdict would) in the middle of a read."""

    def __init__(self, root: Path, db: Database) -> None:
        super().__init__(root)
        self.db = db
        self.job_id = 0

    def iter_range(self, uri: str, start: int, end: int, block_size: int = 1 << 20) -> Iterator[bytes]:
        for i, piece in enumerate(super().iter_range(uri, start, end, 1024)):
            if i == 2 and self.job_id:
                assert rejection.reject_file(self.db.engine, self.job_id, "refused meanwhile")
            yield piece


@pytest.mark.postgres  # SQLite's single writer would make the refusal wait for the chunk's transaction
def test_a_chunk_loading_while_its_job_is_refused_rolls_back(pg_url: str, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=500, seed=15)
    db = Database(pg_url)
    storage = RefusingStorage(tmp_path / "store", db)
    registration = jobs.register_job(db.engine, stage(path, storage, 1 << 20))
    storage.job_id = registration.job_id
    (chunk,) = registration.pending
    result = loader.load_chunk(db, storage, registration.job_id, registration.uri, chunk, block_size=1024,
                               max_line_bytes=1 << 20)
    assert result.stopped
    assert count(db, clientes) == 0 and count(db, ingest_rejects) == 0
    assert chunk_statuses(db, registration.job_id) == ["pending"]
    assert job_queries.get_job(db.engine, registration.job_id).status == "rejected_file"
