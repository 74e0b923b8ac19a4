"""Finding abandoned jobs (``recovery.abandoned_jobs``) on SQLite and the real PostgreSQL: stale running
and old pending jobs are found, longest idle first; live, fresh, finished and failed ones are not."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from clientes_ingest import jobs
from clientes_ingest.db import Database, ingest_chunks, ingest_jobs, utcnow
from clientes_ingest.dialects import dialect_for
from clientes_ingest.recovery import DB_CLOCK, abandoned_jobs, abandoned_statements

LEASE = 60.0


@pytest.fixture
def database(db_url: str) -> Database:
    database = Database(db_url)
    database.ensure_schema()
    return database


def add_job(database: Database, status: str, *, heartbeat_age: float | None = None,
            created_age: float | None = None, runs: int = 1, chunks: tuple[str, ...] = ()) -> int:
    """A job row as a run (or the webhook) leaves it, with timestamps ``*_age`` seconds in the past."""
    now = utcnow()
    values: dict[str, Any] = dict(source_uri=f"file:///store/{status}.dat", file_name=f"{status}.dat", status=status,
                                  runs=runs, chunk_count=len(chunks) or None)
    if heartbeat_age is not None:
        values["heartbeat_at"] = now - dt.timedelta(seconds=heartbeat_age)
    if created_age is not None:  # else the database's CURRENT_TIMESTAMP, as create_pending_job leaves it
        values["created_at"] = now - dt.timedelta(seconds=created_age)
    with database.engine.begin() as conn:
        job_id = int(conn.execute(ingest_jobs.insert().values(**values)).inserted_primary_key[0])
        if chunks:
            conn.execute(ingest_chunks.insert(), [
                dict(job_id=job_id, chunk_no=n, start_offset=n * 10, end_offset=n * 10 + 10, first_line=n + 1,
                     line_count=1, status=state) for n, state in enumerate(chunks)])
    return job_id


def ids(found: list[Any]) -> list[int]:
    return [job.job_id for job in found]


def test_stale_running_and_old_pending_are_found_longest_idle_first(database: Database) -> None:
    add_job(database, "running", heartbeat_age=5)  # a live run
    stale = add_job(database, "running", heartbeat_age=3600, runs=2, chunks=("done", "done", "running", "pending"))
    older_stale = add_job(database, "running", heartbeat_age=7200)
    old_pending = add_job(database, "pending", created_age=5400, runs=0)
    jobs.create_pending_job(database.engine, "file:///store/new.dat", "new.dat")  # fresh pending
    for status in ("completed", "completed_with_rejects", "failed", "duplicate"):
        add_job(database, status, heartbeat_age=9000, created_age=9000)

    found = abandoned_jobs(database.engine, LEASE)

    assert ids(found) == [older_stale, old_pending, stale]
    by_id = {job.job_id: job for job in found}
    assert (by_id[stale].status, by_id[stale].runs, by_id[stale].chunks_done, by_id[stale].chunk_count) == (
        "running", 2, 2, 4)
    assert 3590 < by_id[stale].idle_seconds < 3700
    assert (by_id[old_pending].status, by_id[old_pending].chunk_count) == ("pending", 0)
    assert 5390 < by_id[old_pending].idle_seconds < 5500
    assert by_id[stale].source_uri == "file:///store/running.dat"


def test_limit_keeps_the_longest_idle(database: Database) -> None:
    jobs_by_age = {age: add_job(database, "running" if age % 2 else "pending", heartbeat_age=age if age % 2 else None,
                                created_age=age) for age in (1001, 3000, 2001, 4000, 5001)}
    assert ids(abandoned_jobs(database.engine, LEASE, limit=2)) == [jobs_by_age[5001], jobs_by_age[4000]]
    assert ids(abandoned_jobs(database.engine, LEASE, limit=10)) == [
        jobs_by_age[a] for a in (5001, 4000, 3000, 2001, 1001)]
    assert abandoned_jobs(database.engine, LEASE, limit=0) == []


def test_the_lease_decides(database: Database) -> None:
    job = add_job(database, "running", heartbeat_age=120)
    assert ids(abandoned_jobs(database.engine, 100)) == [job]
    assert abandoned_jobs(database.engine, 200) == []


def test_a_running_job_that_never_beat_is_abandoned(database: Database) -> None:
    job = add_job(database, "running", created_age=30)
    assert ids(abandoned_jobs(database.engine, LEASE)) == [job]


def test_takeover_key_changes_with_each_takeover(database: Database) -> None:
    job_id = add_job(database, "running", heartbeat_age=3600, runs=1)
    (first,) = abandoned_jobs(database.engine, LEASE)
    (again,) = abandoned_jobs(database.engine, LEASE)
    assert first.takeover_key == again.takeover_key  # two recoveries of one abandonment share it
    with database.engine.begin() as conn:  # another run took it over, then died too
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(
            runs=2, heartbeat_at=utcnow() - dt.timedelta(seconds=600)))
    (later,) = abandoned_jobs(database.engine, LEASE)
    assert later.takeover_key != first.takeover_key and str(job_id) in later.takeover_key


def test_a_database_without_the_schema_has_no_abandoned_jobs(tmp_path: Any) -> None:
    assert abandoned_jobs(Database(f"sqlite:///{tmp_path / 'empty.db'}").engine, LEASE) == []


def test_the_statements_compile_for_mssql() -> None:
    now = dt.datetime(2026, 1, 1)
    compiled = [str(s.compile(dialect=dialect_for("mssql")))
                for s in (DB_CLOCK, *abandoned_statements(now, now, LEASE, 5))]
    assert compiled[0] == "SELECT CURRENT_TIMESTAMP AS current_timestamp_1"
    for statement in compiled[1:]:
        assert statement.startswith("SELECT TOP __[POSTCOMPILE_param_1] ingest_jobs.id")  # the limit
        assert "NULLS" not in statement  # SQL Server has no NULLS FIRST/LAST
    assert "ORDER BY CASE WHEN (ingest_jobs.heartbeat_at IS NULL) THEN 0 ELSE 1 END" in compiled[1]
