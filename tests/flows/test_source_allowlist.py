"""The ingest flow itself refuses sources outside the allow-lists (defence in depth behind the trigger and
the API): another bucket, and in deployment mode local files outside CLIENTES_ALLOWED_LOCAL_ROOTS
(it used to read /proc/self/environ and /etc/passwd, whose lines became readable rejects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clientes_ingest import job_queries, jobs
from clientes_ingest.db import Database, ingest_rejects
from clientes_ingest.sources import SourceNotAllowed
from flows.ingest import ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")

LINE = "María|Gómez|45678901|Activo|11/13/2021|true|false\n"


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    monkeypatch.setenv("CLIENTES_DB_URL", url)
    monkeypatch.setenv("CLIENTES_STORAGE", "local")
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    database = Database(url)
    database.ensure_schema()
    return database


def reject_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(ingest_rejects)).scalar_one())


def test_a_run_never_reads_a_bucket_that_is_not_allowed(
    db: Database, aws_s3_client: Any, aws_bucket: str
) -> None:
    other = f"{aws_bucket}-attacker"
    aws_s3_client.create_bucket(Bucket=other)
    aws_s3_client.put_object(Bucket=other, Key="incoming/CLIENTES_IN_0425.dat", Body=LINE.encode())
    job_id = jobs.create_pending_job(db.engine, f"s3://{other}/incoming/CLIENTES_IN_0425.dat", "x.dat")
    with pytest.raises(SourceNotAllowed, match=rf"bucket '{other}' is not allowed"):
        ingest_clientes(source=f"s3://{other}/incoming/CLIENTES_IN_0425.dat", job_id=job_id)
    job = job_queries.get_job(db.engine, job_id)
    assert job.status == "failed" and "is not allowed" in (job.error or "")
    assert job.rows_loaded == 0 and reject_count(db) == 0


def test_in_deployment_mode_a_run_reads_only_local_files_under_the_allowed_roots(
    db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "CLIENTES_IN_0425.dat").write_text(LINE)
    (inbox / "link.dat").symlink_to("/etc/passwd")
    monkeypatch.setenv("CLIENTES_ALLOWED_LOCAL_ROOTS", str(inbox))
    for source in ("/proc/self/environ", "/etc/passwd", "file:///etc/passwd", str(inbox / "link.dat")):
        with pytest.raises(SourceNotAllowed, match="local sources must be under CLIENTES_ALLOWED_LOCAL_ROOTS"):
            ingest_clientes(source=source)
    assert reject_count(db) == 0  # nothing of those files became a reject
    result = ingest_clientes(source=str(inbox / "CLIENTES_IN_0425.dat"))
    assert result.rows_loaded == 1 and result.status == "completed"
