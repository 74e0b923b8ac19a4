"""The database-writers limit (CLIENTES_DB_WRITE_LIMIT): a Prefect global concurrency limit whose slots
each chunk holds for its whole load. Real flows on PostgreSQL (SQLite serialises writers by itself)
under the test harness; each test uses its own limit name, so the shared harness keeps no limit."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from blocks.register import upsert_concurrency_limit
from clientes_ingest.db import Database, clientes, ingest_chunks, ingest_jobs, utcnow
from clientes_ingest.devtools.generator import generate
from clientes_ingest.flow_results import IngestResult
from flows.ingest import IngestFailed, ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")

LINES = 16000
CHUNK_SIZE = "400KiB"  # 4 chunks of about 4000 lines


@pytest.fixture(scope="module")
def clients_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("limit") / "CLIENTES_IN_0425.dat"
    generate(path, lines=LINES, seed=5)
    return path


@pytest.fixture
def limit_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> Iterator[str]:
    """A fresh limit name in the environment (not created), and the run's PostgreSQL settings."""
    name = f"test-db-writers-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CLIENTES_DB_URL", pg_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    # Small parse blocks: many COPY round trips per chunk, so a chunk's load lasts long enough that two
    # chunks started together by the 2-thread runner do overlap unless the limit keeps them apart.
    monkeypatch.setenv("CLIENTES_BLOCK_SIZE", "2KiB")
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", name)
    yield name
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(name)


def load_intervals(db: Database, job_id: int) -> list[tuple[datetime, datetime]]:
    """Each chunk's load as the database recorded it (attempt start, commit), sorted by start."""
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(c.started_at, c.finished_at).where(c.job_id == job_id)).all()
    assert all(start and end for start, end in found)
    return sorted((start, end) for start, end in found)


def overlaps(intervals: list[tuple[datetime, datetime]]) -> int:
    """How many loads began before the previous one (by start) had committed."""
    return sum(1 for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False) if start < end)


def assert_loaded_exactly_once(db: Database, result: IngestResult) -> None:
    c = clientes.c
    with db.engine.connect() as conn:
        total, distinct = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(c.LineNumber))).where(c.JobId == result.job_id)
        ).one()
    assert result.chunks_done == result.chunk_count
    assert total == distinct == result.rows_loaded > 0
    assert result.rows_loaded + result.rows_rejected + result.blank_lines == LINES


def chunk_attempts(db: Database, job_id: int) -> list[int]:
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        return list(conn.execute(sa.select(c.attempts).where(c.job_id == job_id)).scalars())


@pytest.mark.parametrize("isolation", ["thread", "subprocess"])
def test_one_slot_keeps_chunk_loads_apart(
    limit_name: str, clients_file: Path, pg_url: str, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIENTES_CHUNK_ISOLATION", isolation)
    assert upsert_concurrency_limit(limit_name, 1) == "created"
    result = ingest_clientes(source=str(clients_file), chunk_size=CHUNK_SIZE)
    db = Database(pg_url)
    assert result.chunk_count >= 4
    assert_loaded_exactly_once(db, result)
    assert overlaps(load_intervals(db, result.job_id)) == 0
    assert chunk_attempts(db, result.job_id) == [1] * result.chunk_count  # waiting is not a failed attempt
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name).active_slots == 0  # every slot released


def test_two_slots_load_every_row_exactly_once(limit_name: str, clients_file: Path, pg_url: str) -> None:
    assert upsert_concurrency_limit(limit_name, 2) == "created"
    result = ingest_clientes(source=str(clients_file), chunk_size=CHUNK_SIZE)
    assert result.chunk_count >= 4
    assert_loaded_exactly_once(Database(pg_url), result)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name).active_slots == 0


def test_a_missing_limit_loads_everything_and_warns_once(
    limit_name: str, clients_file: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        result = ingest_clientes(source=str(clients_file), chunk_size=CHUNK_SIZE)
    assert result.chunk_count >= 4
    assert_loaded_exactly_once(Database(pg_url), result)
    missing = f"global concurrency limit {limit_name!r} does not exist"
    warnings = [r for r in caplog.records if missing in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "clientes-ingest blocks register" in warnings[0].getMessage()
    assert "do not exist - skipping acquisition" not in caplog.text  # not Prefect's own warning per chunk


def test_an_empty_limit_name_turns_the_limit_off_and_chunks_overlap(
    limit_name: str, clients_file: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the 1-slot test: the same file and 2-thread runner, unlimited, do overlap."""
    upsert_concurrency_limit(limit_name, 1)
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", " ")
    with caplog.at_level(logging.INFO):
        result = ingest_clientes(source=str(clients_file), chunk_size=CHUNK_SIZE)
    db = Database(pg_url)
    assert_loaded_exactly_once(db, result)
    assert overlaps(load_intervals(db, result.job_id)) >= 1  # the 1-slot limit was not consulted
    assert "global concurrency limit" not in caplog.text


def test_a_limit_of_zero_fails_the_chunks_with_a_clear_error(
    limit_name: str, sample_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name, limit=0))
    with pytest.raises(IngestFailed):
        ingest_clientes(source=str(sample_file))
    assert f"cannot take a slot of the global concurrency limit {limit_name!r}" in caplog.text
    assert f"prefect gcl inspect {limit_name}" in caplog.text


def test_a_run_waiting_for_a_slot_keeps_its_job_alive(
    limit_name: str, clients_file: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks that wait longer than the job lease for a slot keep the job's heartbeat fresh: a second run
    of the same file sees it in progress (not abandoned) and loads nothing."""
    lease_seconds = 3.0  # beats every 1 s: a beat may be late by a second on a busy machine
    monkeypatch.setenv("CLIENTES_JOB_LEASE_SECONDS", str(lease_seconds))
    assert upsert_concurrency_limit(limit_name, 1) == "created"
    db = Database(pg_url)
    finished: list[IngestResult] = []
    runner = threading.Thread(target=lambda: finished.append(
        ingest_clientes(source=str(clients_file), chunk_size=CHUNK_SIZE)))
    with concurrency(limit_name, occupy=1, strict=True):  # another writer holds the only slot
        runner.start()
        deadline = time.monotonic() + 120
        job = None
        while job is None and time.monotonic() < deadline:
            with db.engine.connect() as conn:
                job = conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.status == "running")).mappings().first()
            time.sleep(0.2)
        assert job is not None, "the first run never registered its job"
        time.sleep(2 * lease_seconds)  # its chunks wait two leases for the slot
        with db.engine.connect() as conn:
            beat = conn.execute(sa.select(ingest_jobs.c.heartbeat_at).where(ingest_jobs.c.id == job["id"])).scalar_one()
        assert (utcnow() - beat.replace(tzinfo=None)).total_seconds() < lease_seconds
        second = ingest_clientes(source=str(clients_file), chunk_size=CHUNK_SIZE)
        assert second.action == "in_progress" and second.job_id == job["id"]
    runner.join(timeout=180)
    assert not runner.is_alive() and [first.job_id for first in finished] == [job["id"]]
    assert_loaded_exactly_once(db, finished[0])
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(ingest_jobs.c.runs).where(ingest_jobs.c.id == job["id"])).scalar_one() == 1
