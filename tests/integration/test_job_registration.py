"""Job registration: one job per file content, force, resume, pre-registered jobs and the database
guard against two concurrent runs of the same file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import load_file, rows, stage

from clientes_ingest import job_queries, jobs
from clientes_ingest.db import Database, ingest_jobs
from clientes_ingest.jobs import Action
from clientes_ingest.storage import LocalStorage


@pytest.fixture
def staged(tmp_path: Path, sample_file: Path) -> jobs.StagedFile:
    return stage(sample_file, LocalStorage(tmp_path / "store"), chunk_size=64)


def test_a_new_file_gets_a_job_with_all_its_chunks(db_url: str, staged: jobs.StagedFile) -> None:
    db = Database(db_url)
    db.ensure_schema()
    registration = jobs.register_job(db.engine, staged, flow_run_id="00000000-0000-0000-0000-000000000001")
    assert registration.action == Action.LOAD
    assert registration.pending == staged.chunks and registration.chunk_count == len(staged.chunks) > 1
    summary = job_queries.get_job(db.engine, registration.job_id)
    assert (summary.status, summary.sha256, summary.size_bytes) == ("running", staged.sha256, staged.size)


def test_the_same_content_is_not_loaded_twice_unless_forced(db_url: str, sample_file: Path, tmp_path: Path) -> None:
    db = Database(db_url)
    first = load_file(db, sample_file, tmp_path / "store")
    copy = tmp_path / "other-name.dat"
    copy.write_bytes(sample_file.read_bytes())  # same content, another name
    db.ensure_schema()
    again = jobs.register_job(db.engine, stage(copy, LocalStorage(tmp_path / "store"), 1 << 20))
    assert (again.action, again.job_id) == (Action.ALREADY_LOADED, first.job_id)
    forced = load_file(db, copy, tmp_path / "store", force=True)
    assert forced.action == Action.LOAD and forced.job_id != first.job_id
    assert rows(db, forced.job_id) == rows(db, first.job_id) != []


def test_a_live_job_is_left_alone_and_a_failed_one_is_resumed(db_url: str, staged: jobs.StagedFile) -> None:
    db = Database(db_url)
    db.ensure_schema()
    first = jobs.register_job(db.engine, staged)
    second = jobs.register_job(db.engine, staged)
    assert (second.action, second.job_id) == (Action.IN_PROGRESS, first.job_id)
    jobs.fail_job(db.engine, first.job_id, "simulated crash")
    resumed = jobs.register_job(db.engine, staged)
    assert (resumed.action, resumed.job_id) == (Action.RESUME, first.job_id)
    assert resumed.pending == staged.chunks


def test_a_job_whose_run_stopped_heart_beating_is_taken_over(db_url: str, staged: jobs.StagedFile) -> None:
    db = Database(db_url)
    db.ensure_schema()
    first = jobs.register_job(db.engine, staged)
    assert jobs.register_job(db.engine, staged, lease_seconds=3600).action == Action.IN_PROGRESS
    taken = jobs.register_job(db.engine, staged, lease_seconds=0)
    assert (taken.action, taken.job_id) == (Action.RESUME, first.job_id)
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(ingest_jobs.c.runs)).scalar_one() == 2


def test_a_pre_registered_job_is_filled_in_by_its_run(db_url: str, staged: jobs.StagedFile) -> None:
    db = Database(db_url)
    db.ensure_schema()
    job_id = jobs.create_pending_job(db.engine, "upload://CLIENTES_IN_0425.dat", "CLIENTES_IN_0425.dat")
    assert job_queries.get_job(db.engine, job_id).status == "pending"
    registration = jobs.register_job(db.engine, staged, job_id=job_id)
    assert (registration.action, registration.job_id) == (Action.LOAD, job_id)
    assert job_queries.get_job(db.engine, job_id).sha256 == staged.sha256
    other = jobs.create_pending_job(db.engine, "upload://copy.dat", "copy.dat")
    duplicate = jobs.register_job(db.engine, staged, job_id=other)
    assert (duplicate.action, duplicate.job_id) == (Action.IN_PROGRESS, job_id)
    assert job_queries.get_job(db.engine, other).status == "duplicate"


def test_a_job_planned_at_upload_keeps_its_plan_object_and_version(
    db_url: str, staged: jobs.StagedFile, tmp_path: Path, sample_file: Path
) -> None:
    db = Database(db_url)
    db.ensure_schema()
    job_id = jobs.create_pending_job(db.engine, staged.uri, staged.name, staged=staged)
    source = jobs.job_source(db.engine, job_id)
    assert source is not None and source.staged == staged and source.version == staged.version is not None
    # A run that staged the same content elsewhere, with another chunk size: the job's plan and object win.
    elsewhere = stage(sample_file, LocalStorage(tmp_path / "elsewhere"), chunk_size=1 << 20)
    assert elsewhere.sha256 == staged.sha256 and elsewhere.chunks != staged.chunks
    registration = jobs.register_job(db.engine, elsewhere, job_id=job_id)
    assert (registration.action, registration.uri, registration.pending) == (Action.LOAD, staged.uri, staged.chunks)
    summary = job_queries.get_job(db.engine, job_id)
    assert (summary.status, summary.chunk_count, summary.source_uri) == ("running", len(staged.chunks), staged.uri)
    assert jobs.job_source(db.engine, job_id).staged is None  # running now: a resume re-reads and re-checks
    # Its content is claimed: another upload of it becomes a duplicate of this job.
    other = jobs.create_pending_job(db.engine, staged.uri, staged.name, staged=staged)
    assert jobs.register_job(db.engine, staged, job_id=other).job_id == job_id
    assert job_queries.get_job(db.engine, other).status == "duplicate"


def test_job_id_errors_are_clear(db_url: str, staged: jobs.StagedFile, tmp_path: Path) -> None:
    db = Database(db_url)
    db.ensure_schema()
    with pytest.raises(job_queries.JobError, match="job 999 does not exist"):
        jobs.register_job(db.engine, staged, job_id=999)
    job_id = jobs.register_job(db.engine, staged).job_id
    other_file = tmp_path / "other.dat"
    other_file.write_text("a|b|1|Activo|1/1/2020|true|false\n")
    other = stage(other_file, LocalStorage(tmp_path / "store"), 1 << 20)
    with pytest.raises(job_queries.JobError, match=f"job {job_id} was registered for other content"):
        jobs.register_job(db.engine, other, job_id=job_id)


@pytest.mark.postgres
def test_concurrent_registrations_of_one_file_let_exactly_one_load(pg_url: str, staged: jobs.StagedFile) -> None:
    db = Database(pg_url)
    outcomes: list[jobs.Registration] = []
    barrier = threading.Barrier(4)

    def register() -> None:
        barrier.wait()
        outcomes.append(jobs.register_job(db.engine, staged))

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.action for o in outcomes) == [Action.IN_PROGRESS] * 3 + [Action.LOAD]
    assert len({o.job_id for o in outcomes}) == 1
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ingest_jobs)).scalar_one() == 1
