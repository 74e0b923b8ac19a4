"""lease.beat / lease.keep_alive: a running job's heartbeat moves while a chunk task waits or loads, stops
with the block, skips a failed beat, and never revives a finished job. SQLite and PostgreSQL, no Prefect."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from clientes_ingest import lease
from clientes_ingest.db import Database, ingest_jobs

OLD = dt.datetime(2000, 1, 1)


def make_job(db: Database, status: str = "running") -> int:
    with db.engine.begin() as conn:
        result = conn.execute(ingest_jobs.insert().values(
            source_uri="file:///x.dat", file_name="x.dat", status=status, heartbeat_at=OLD, runs=1))
        return int(result.inserted_primary_key[0])


def heartbeat(db: Database, job_id: int) -> dt.datetime:
    with db.engine.connect() as conn:
        value = conn.execute(sa.select(ingest_jobs.c.heartbeat_at).where(ingest_jobs.c.id == job_id)).scalar_one()
    return value.replace(tzinfo=None)


def test_beat_moves_a_running_jobs_heartbeat_only(db_url: str) -> None:
    db = Database(db_url)
    db.ensure_schema()
    running, done = make_job(db), make_job(db, status="completed")
    assert lease.beat(db.engine, running) is True
    assert heartbeat(db, running) > OLD
    assert lease.beat(db.engine, done) is False and heartbeat(db, done) == OLD  # a finished job stays finished
    assert lease.beat(db.engine, 10**9) is False


def beat_after(db: Database, job_id: int, previous: dt.datetime) -> dt.datetime:
    """The job's heartbeat once it is later than ``previous`` (polled: beats may be late on a busy machine)."""
    deadline = time.monotonic() + 10
    while (beat := heartbeat(db, job_id)) <= previous:
        assert time.monotonic() < deadline, f"no heartbeat after {previous} within 10 s"
        time.sleep(0.02)
    return beat


def test_keep_alive_beats_while_the_block_runs_and_stops_after(db_url: str) -> None:
    db = Database(db_url)
    db.ensure_schema()
    job_id = make_job(db)
    with lease.keep_alive(db.engine, job_id, every_seconds=0.05):
        first = beat_after(db, job_id, OLD)
        beat_after(db, job_id, first)  # still beating
    last = heartbeat(db, job_id)
    time.sleep(0.3)
    assert heartbeat(db, job_id) == last  # stopped with the block


def test_keep_alive_survives_an_unreachable_database() -> None:
    db = Database("postgresql+psycopg://app:pw@127.0.0.1:1/clientes")
    with lease.keep_alive(db.engine, 1, every_seconds=0.05):
        time.sleep(0.3)  # several beats fail (connection refused)...
        beating = [t for t in threading.enumerate() if t.name == "job-1-heartbeat"]
        assert beating and beating[0].is_alive()  # ...and the heartbeat thread goes on, for the next one


def test_keep_alive_needs_a_positive_interval(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="every_seconds must be positive"), \
            lease.keep_alive(Database(sqlite_url).engine, 1, every_seconds=0):
        pass
