"""Who holds a running job, and when a rerun may take it over before the lease expires: only when the
holder is provably dead (same host and its pid gone, or the pid reused by another process). SQLite and
PostgreSQL, no Prefect."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import stage

from clientes_ingest import jobs, lease
from clientes_ingest.db import Database, add_missing_columns, ingest_jobs
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage

HOST = socket.gethostname()


def by_process(holder: lease.Holder) -> bool:
    return lease.process_is_dead(holder.host, holder.pid, holder.started)


@pytest.fixture
def staged(tmp_path: Path) -> jobs.StagedFile:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=300, seed=21)
    return stage(path, LocalStorage(tmp_path / "store"), 4000)


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    database.ensure_schema()
    return database


def dead_owner() -> lease.Owner:
    """A process of this host that existed and is gone (started, recorded, killed, reaped)."""
    proc = subprocess.Popen(["sleep", "30"])
    owner = lease.Owner(HOST, proc.pid, lease.process_started(proc.pid))
    proc.kill()
    proc.wait()
    assert owner.started is not None
    return owner


def owner_row(db: Database, job_id: int) -> tuple[object, ...]:
    j = ingest_jobs.c
    with db.engine.connect() as conn:
        return tuple(conn.execute(sa.select(j.owner_host, j.owner_pid, j.runs).where(j.id == job_id)).one())


def test_a_job_records_its_owner_process(db: Database, staged: jobs.StagedFile) -> None:
    me = lease.this_process()
    assert (me.host, me.pid) == (HOST, os.getpid()) and me.started == lease.process_started(os.getpid())
    first = jobs.register_job(db.engine, staged, owner=me, flow_run_id="f1")
    assert owner_row(db, first.job_id) == (HOST, os.getpid(), 1)


def test_a_dead_owner_on_this_host_is_taken_over_at_once(db: Database, staged: jobs.StagedFile) -> None:
    first = jobs.register_job(db.engine, staged, owner=dead_owner())  # heartbeat fresh, lease 900 s
    assert jobs.register_job(db.engine, staged, owner=lease.this_process()).action == jobs.Action.IN_PROGRESS
    second = jobs.register_job(db.engine, staged, owner=lease.this_process(), holder_is_dead=by_process)
    assert (second.job_id, second.action) == (first.job_id, jobs.Action.RESUME)
    assert len(second.pending) == len(first.pending)  # only chunks not done: here, all of them
    assert owner_row(db, first.job_id) == (HOST, os.getpid(), 2)


def test_a_live_owner_keeps_its_job_and_is_named(db: Database, staged: jobs.StagedFile) -> None:
    first = jobs.register_job(db.engine, staged, owner=lease.this_process(), flow_run_id="run-1")
    again = jobs.register_job(db.engine, staged, owner=lease.this_process(), holder_is_dead=by_process)
    assert again.action == jobs.Action.IN_PROGRESS and again.holder is not None
    text = again.holder.describe()
    assert text.startswith(f"pid {os.getpid()} on host {HOST} (flow run run-1) since 20")
    assert "last heartbeat 0s ago" in text
    assert owner_row(db, first.job_id) == (HOST, os.getpid(), 1)


def test_a_reused_pid_is_not_the_owner(db: Database, staged: jobs.StagedFile) -> None:
    # The pid exists (it is this process) but started at another time: the owner was an earlier process.
    reused = lease.Owner(HOST, os.getpid(), "another-boot:12345")
    assert lease.process_is_dead(reused.host, reused.pid, reused.started)
    first = jobs.register_job(db.engine, staged, owner=reused)
    second = jobs.register_job(db.engine, staged, owner=lease.this_process(), holder_is_dead=by_process)
    assert (second.job_id, second.action) == (first.job_id, jobs.Action.RESUME)


def test_an_owner_elsewhere_or_unknown_is_not_provably_dead(db: Database, staged: jobs.StagedFile) -> None:
    assert not lease.process_is_dead("another-host", 1, "x:1")
    assert not lease.process_is_dead(HOST, None, None)
    jobs.register_job(db.engine, staged, owner=lease.Owner("another-host", dead_owner().pid, "x:1"))
    again = jobs.register_job(db.engine, staged, owner=lease.this_process(), holder_is_dead=by_process)
    assert again.action == jobs.Action.IN_PROGRESS


def test_of_two_runs_that_find_the_owner_dead_one_takes_over(db: Database, staged: jobs.StagedFile) -> None:
    first = jobs.register_job(db.engine, staged, owner=dead_owner())
    winner: list[jobs.Registration] = []

    def dead_but_another_run_wins_first(holder: lease.Holder) -> bool:
        # Between our look at the job and our takeover, another run takes it over.
        winner.append(jobs.register_job(db.engine, staged, owner=lease.this_process(), holder_is_dead=by_process))
        return True

    loser = jobs.register_job(db.engine, staged, owner=lease.Owner(HOST, 1, lease.process_started(1)),
                              holder_is_dead=dead_but_another_run_wins_first)
    assert winner[0].action == jobs.Action.RESUME
    assert loser.action == jobs.Action.IN_PROGRESS and loser.holder is not None
    assert loser.holder.pid == os.getpid()  # names the winner, not the dead owner
    assert owner_row(db, first.job_id) == (HOST, os.getpid(), 2)


def test_wait_for_job_returns_the_finished_job_or_none_when_its_holder_dies(
    db: Database, staged: jobs.StagedFile
) -> None:
    registration = jobs.register_job(db.engine, staged, owner=lease.this_process())
    polls: list[float] = []

    def holder_finishes(seconds: float) -> None:
        polls.append(seconds)
        jobs.fail_job(db.engine, registration.job_id, "finished by its holder")

    summary = lease.wait_for_job(db.engine, registration.job_id, lease_seconds=900, holder_is_dead=by_process,
                                poll_seconds=0.5, sleep=holder_finishes)
    assert polls == [0.5] and summary is not None and summary.status == "failed"

    other = jobs.register_job(db.engine, staged, force=True, owner=dead_owner())
    assert lease.wait_for_job(db.engine, other.job_id, lease_seconds=900, holder_is_dead=by_process,
                             sleep=pytest.fail) is None  # dead holder: the caller takes the job over


def test_a_database_made_before_the_owner_columns_gets_them(db: Database) -> None:
    with db.engine.begin() as conn:
        for column in ("owner_host", "owner_pid", "owner_started", "owner_since"):
            conn.exec_driver_sql(f"ALTER TABLE ingest_jobs DROP COLUMN {column}")
        conn.exec_driver_sql("DROP TABLE ingest_reject_counts")
    db.ensure_schema()
    have = {c["name"] for c in sa.inspect(db.engine).get_columns("ingest_jobs")}
    assert {"owner_host", "owner_pid", "owner_started", "owner_since"} <= have
    assert sa.inspect(db.engine).has_table("ingest_reject_counts")
    assert add_missing_columns(db.engine) == []  # idempotent
