"""The ingest-clientes flow refuses a garbage file: the job ends ``rejected_file`` and the flow run
fails (red in Prefect, so automations can act); a rerun of the same bytes is refused again, and only
``force`` with the guard loosened loads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.garbage import random_bytes
from support.loading import count

from clientes_ingest.db import Database, clientes
from clientes_ingest.job_queries import get_job
from flows.ingest import IngestFailed, ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", sqlite_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    return Database(sqlite_url)


def test_a_random_bytes_file_fails_the_flow_run_as_rejected_file(
    env: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = random_bytes(tmp_path / "CLIENTES_IN_0425.dat")
    state = ingest_clientes(source=str(path), chunk_size="64KiB", return_state=True)
    assert state.is_failed()
    refused = r"job 1 rejected_file: (9\d|100)\.\d% of [\d,]+ non-blank lines rejected"
    with pytest.raises(IngestFailed, match=refused) as exc:
        state.result()
    assert exc.value.job_id == 1
    job = get_job(env.engine, 1)
    assert job.status == "rejected_file" and count(env, clientes) == 0

    with pytest.raises(IngestFailed, match="job 1 refused this content"):
        ingest_clientes(source=str(path), chunk_size="64KiB")

    monkeypatch.setenv("CLIENTES_MAX_REJECT_RATIO", "1")  # the operator decides to load it anyway
    result = ingest_clientes(source=str(path), chunk_size="64KiB", force=True)
    assert (result.job_id, result.status) == (2, "completed_with_rejects")
