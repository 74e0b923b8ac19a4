"""The downstream hook's flow (clientes-snapshot-ready) under Prefect's test harness: after a completed load
it reports that clientes_vigentes shows that job; after a later load, that a later job is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.ingest import ingest_clientes
from flows.snapshot import clientes_snapshot_ready

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_hook_reports_the_view_of_the_completed_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str
) -> None:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", "")
    first, second = tmp_path / "CLIENTES_IN_0525.dat", tmp_path / "CLIENTES_IN_0625.dat"
    first.write_text("María|Gómez|45678901|Activo|11/13/2021|true|false\nbad|line\n", encoding="utf-8")
    second.write_text("Juan|Pérez|12345678|Inactivo|8/9/2022|false|\n" * 3, encoding="utf-8")
    job = ingest_clientes(source=str(first)).job_id
    assert clientes_snapshot_ready(job) == {"job_id": job, "current": True, "view_job_id": job, "view_rows": 1}
    later = ingest_clientes(source=str(second)).job_id
    assert clientes_snapshot_ready(job) == {"job_id": job, "current": False, "view_job_id": later, "view_rows": 3}
