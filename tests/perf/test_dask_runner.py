"""The ingest-clientes flow on a local Dask cluster of 2 worker processes (prefect-dask's DaskTaskRunner)
loads exactly the rows and rejects of the default thread-pool runner.

Requires: PostgreSQL on 127.0.0.1:5432 (both runs write the session's test database), prefect-dask.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect_dask import DaskTaskRunner
from support.loading import rejects, rows

from clientes_ingest.db import Database, ingest_chunks
from clientes_ingest.devtools.generator import generate
from flows.ingest import build_task_runner, ingest_clientes

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", pg_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    return Database(pg_url)


def done_chunks(db: Database, job_id: int) -> int:
    """How many chunks of a job are done (the loader records one row per chunk)."""
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(c.job_id == job_id, c.status == "done")
        return int(conn.execute(query).scalar_one())


def test_dask_runner_loads_exactly_the_rows_of_the_default_runner(env: Database, tmp_path: Path) -> None:
    source = tmp_path / "CLIENTES_IN_0425.dat"
    generate(source, lines=3000, seed=7)

    reference = ingest_clientes(source=str(source), chunk_size="32KiB")
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": None})
    on_dask = ingest_clientes.with_options(task_runner=runner)(source=str(source), chunk_size="32KiB", force=True)

    assert reference.status == on_dask.status == "completed_with_rejects"
    assert on_dask.job_id != reference.job_id
    assert on_dask.chunk_count == reference.chunk_count >= 4  # several chunks, spread over the workers
    assert done_chunks(env, on_dask.job_id) == on_dask.chunk_count
    for key in ("rows_loaded", "rows_rejected", "blank_lines", "total_lines", "rejects_by_reason"):
        assert getattr(on_dask, key) == getattr(reference, key), key
    expected_rows, got_rows = rows(env, reference.job_id), rows(env, on_dask.job_id)
    assert len(got_rows) == reference.rows_loaded > 0
    assert got_rows == expected_rows
    assert rejects(env, on_dask.job_id) == rejects(env, reference.job_id)


def test_task_runner_is_chosen_by_clientes_dask_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLIENTES_DASK_ADDRESS", raising=False)
    assert type(build_task_runner()).__name__ == "ThreadPoolTaskRunner"
    monkeypatch.setenv("CLIENTES_DASK_ADDRESS", "local")
    local = build_task_runner()
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    monkeypatch.setenv("CLIENTES_DASK_ADDRESS", "tcp://scheduler.dask:8786")
    remote = build_task_runner()
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler.dask:8786"
