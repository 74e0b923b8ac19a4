"""The ingest-clientes flow under Prefect's test harness (a real temporary Prefect API): retries,
reruns, force, resume of a failed job, artifacts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    ArtifactFilterType,
)
from support.loading import count, rejects, rows

from clientes_ingest import resources, tasks
from clientes_ingest.db import Database, clientes, ingest_chunks, ingest_jobs
from clientes_ingest.devtools.generator import generate
from clientes_ingest.job_queries import get_job
from clientes_ingest.storage import LocalStorage
from flows.ingest import IngestFailed, ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    return Database(db_url)


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=2000, seed=11)
    return path


class FailingChunks(LocalStorage):
    """Local storage whose reads of some chunks (by start offset) fail a number of times."""

    def __init__(self, root: Path, failures: dict[int, int]) -> None:
        super().__init__(root)
        self.failures = dict(failures)

    def iter_range(self, uri: str, start: int, end: int, block_size: int = 1 << 20) -> Iterator[bytes]:
        if self.failures.get(start, 0) > 0:
            self.failures[start] -= 1
            raise OSError(f"simulated outage reading bytes {start}-{end}")
        yield from super().iter_range(uri, start, end, block_size)


def chunk_states(db: Database) -> list[tuple[int, str, int]]:
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(c.chunk_no, c.status, c.attempts).order_by(c.chunk_no))]


def test_process_chunk_retries_three_times_with_backoff() -> None:
    assert tasks.process_chunk.retries == 3
    assert len(tasks.process_chunk.retry_delay_seconds) == 3
    assert tasks.backoff(3) == [0.0, 0.0, 0.0]  # CLIENTES_RETRY_BACKOFF_SECONDS=0 in tests
    assert tasks.process_chunk.retry_jitter_factor == 0.5


def test_flow_loads_a_file_and_publishes_artifacts(env: Database, clients_file: Path) -> None:
    result = ingest_clientes(source=str(clients_file), chunk_size="40KiB")
    assert result.action == "load" and result.status == "completed_with_rejects"
    assert result.chunk_count > 3 and result.chunks_done == result.chunk_count
    assert result.rows_loaded + result.rows_rejected + result.blank_lines == 2000
    assert count(env, clientes) == result.rows_loaded
    with env.engine.connect() as conn:
        flow_run_id = conn.execute(sa.select(ingest_jobs.c.flow_run_id)).scalar_one()
    with get_client(sync_client=True) as client:
        keys = [f"clientes-job-{result.job_id}", f"clientes-job-{result.job_id}-rejects"]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=keys), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
        progress = client.read_artifacts(artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    assert [p.data for p in progress] == [100.0]
    by_type = {a.type: a for a in artifacts}
    assert f"{result.rows_loaded:,}" in by_type["markdown"].data
    table = json.loads(by_type["table"].data)  # the API stores a table artifact as JSON text
    assert {row["reason"]: row["count"] for row in table} == result.rejects_by_reason


def test_a_chunk_failing_twice_then_succeeding_loads_exactly_once(
    env: Database, clients_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = ingest_clientes(source=str(clients_file), chunk_size="40KiB")
    expected = rows(env, reference.job_id)
    storage = FailingChunks(tmp_path / "store", {})
    monkeypatch.setattr(resources, "open_storage", lambda settings, source=None: storage)
    second_chunk_start = 0
    with env.engine.connect() as conn:
        second_chunk_start = conn.execute(sa.select(ingest_chunks.c.start_offset)
                                          .where(ingest_chunks.c.chunk_no == 1)).scalar_one()
    storage.failures = {second_chunk_start: 2}
    result = ingest_clientes(source=str(clients_file), chunk_size="40KiB", force=True)
    assert result.status == "completed_with_rejects"
    assert rows(env, result.job_id) == expected
    c = ingest_chunks.c
    with env.engine.connect() as conn:
        attempts = dict(conn.execute(sa.select(c.chunk_no, c.attempts).where(c.job_id == result.job_id)).all())
    assert attempts[1] == 3 and {n: a for n, a in attempts.items() if n != 1} == dict.fromkeys(
        (n for n in attempts if n != 1), 1)


def test_rerunning_the_same_file_adds_nothing_and_force_makes_a_new_job(env: Database, clients_file: Path) -> None:
    first = ingest_clientes(source=str(clients_file))
    loaded = count(env, clientes)
    again = ingest_clientes(source=str(clients_file))
    assert (again.action, again.job_id) == ("already_loaded", first.job_id)
    assert count(env, clientes) == loaded
    forced = ingest_clientes(source=str(clients_file), force=True)
    assert forced.job_id != first.job_id and count(env, clientes) == 2 * loaded


def test_a_failed_job_is_resumed_loading_only_its_missing_chunks(
    env: Database, clients_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FailingChunks(tmp_path / "store", {})
    monkeypatch.setattr(resources, "open_storage", lambda settings, source=None: storage)
    # Chunks of 40 KiB: find the third chunk's offset from a dry plan, then make it fail every attempt.
    from clientes_ingest.chunks import plan_chunks

    plan = plan_chunks([clients_file.read_bytes()], 40 * 1024)
    storage.failures = {plan[2].start: 100}
    with pytest.raises(IngestFailed, match=r"failed: 1 of \d+ chunks not loaded; first error: OSError"):
        ingest_clientes(source=str(clients_file), chunk_size="40KiB")
    states = chunk_states(env)
    assert states[2] == (2, "failed", 4)  # the first attempt and its 3 retries
    assert all(status == "done" and attempts == 1 for n, status, attempts in states if n != 2)
    job_id = get_job(env.engine, 1).job_id
    assert get_job(env.engine, job_id).status == "failed"
    partial = count(env, clientes)

    storage.failures = {}
    result = ingest_clientes(source=str(clients_file), chunk_size="40KiB")
    assert (result.action, result.job_id, result.status) == ("resume", job_id, "completed_with_rejects")
    states = chunk_states(env)
    assert states[2] == (2, "done", 5)
    assert all(attempts == 1 for n, _, attempts in states if n != 2)  # committed chunks were not touched
    assert count(env, clientes) > partial
    assert result.rows_loaded + result.rows_rejected + result.blank_lines == 2000
    assert len(rejects(env)) == result.rows_rejected


def test_a_missing_source_fails_the_run_clearly(env: Database, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"cannot read .*CLIENTES_IN_0199.dat: no such file"):
        ingest_clientes(source=str(tmp_path / "CLIENTES_IN_{MMYY}.dat").replace("{MMYY}", "0199"))


def test_a_dated_template_is_resolved_from_the_run_time(env: Database, tmp_path: Path) -> None:
    import datetime as dt

    today = dt.datetime.now(dt.UTC)
    path = tmp_path / f"CLIENTES_IN_{today:%m%y}.dat"
    path.write_text("a|b|1|Activo|1/1/2020|true|false\n")
    result = ingest_clientes(source=str(tmp_path / "CLIENTES_IN_{MMYY}.dat"))
    assert result.file_name == path.name and result.rows_loaded == 1
