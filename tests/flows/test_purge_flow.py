"""The ``purge-old-jobs`` flow under a Prefect test API, on SQLite and PostgreSQL with local storage and S3
(moto server): the default age comes from ``CLIENTES_RETENTION``, a dry run changes nothing, a purge
removes what old jobs left and publishes a table artifact."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from support.loading import load_file, rejects, rows

from clientes_ingest.db import Database, ingest_jobs, utcnow
from clientes_ingest.devtools.generator import generate
from clientes_ingest.s3 import S3Storage
from clientes_ingest.storage import LocalStorage, Storage
from flows.purge import purge_old_jobs

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Storage:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    client, bucket = request.getfixturevalue("aws_s3_client"), request.getfixturevalue("aws_bucket")
    monkeypatch.setenv("CLIENTES_STORAGE", "s3")
    return S3Storage(client, bucket, "uploads/")


def loaded(db: Database, tmp_path: Path, storage: Storage, seeds: tuple[int, ...]) -> list[int]:
    ids = []
    for seed in seeds:
        path = tmp_path / f"CLIENTES_IN_0{seed}25.dat"
        generate(path, lines=200, seed=seed)
        ids.append(load_file(db, path, tmp_path / "unused", chunk_size=4096, storage=storage).job_id)
    return ids


def finished_ago(db: Database, job_id: int, days: float) -> None:
    with db.engine.begin() as conn:
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id)
                     .values(finished_at=utcnow() - dt.timedelta(days=days)))


def uri(db: Database, job_id: int) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(ingest_jobs.select().where(ingest_jobs.c.id == job_id)).mappings().one()["source_uri"])


def test_the_flow_purges_jobs_older_than_the_configured_retention(
    db_url: str, storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(db_url)
    old, middle, newest = loaded(db, tmp_path, storage, (1, 2, 3))
    finished_ago(db, old, 20)
    finished_ago(db, middle, 5)
    monkeypatch.setenv("CLIENTES_RETENTION", "2w")
    before: dict[int, Any] = {j: (rows(db, j), rejects(db, j)) for j in (old, middle, newest)}

    preview = purge_old_jobs(dry_run=True)
    assert [(r.job_id, r.object, r.rows_deleted) for r in preview] == [
        (old, "would be deleted", len(before[old][0]))]
    assert {j: (rows(db, j), rejects(db, j)) for j in before} == before

    done = purge_old_jobs()
    assert [(r.job_id, r.object, r.rejects_deleted, r.rows_deleted, r.claim_released)
            for r in done] == [(old, "deleted", len(before[old][1]), len(before[old][0]), True)]
    assert not storage.exists(uri(db, old)) and rows(db, old) == [] and rejects(db, old) == []
    for j in (middle, newest):
        assert storage.exists(uri(db, j)) and (rows(db, j), rejects(db, j)) == before[j]

    # An explicit age wins over the setting; rows can be kept.
    (kept,) = purge_old_jobs(older_than="1d", keep_rows=True)
    assert (kept.job_id, kept.object, kept.rows_kept) == (middle, "deleted", True)
    assert rows(db, middle) == before[middle][0] and rejects(db, middle) == []


def test_the_purge_report_is_a_table_artifact(db_url: str, storage: Storage, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    db = Database(db_url)
    old, _ = loaded(db, tmp_path, storage, (1, 2))
    finished_ago(db, old, 40)
    purge_old_jobs()
    with get_client(sync_client=True) as client:
        wanted = ArtifactFilter(key=ArtifactFilterKey(any_=["purged-jobs"]))
        (artifact, *_) = client.read_artifacts(artifact_filter=wanted, sort="CREATED_DESC", limit=1)
    assert artifact.type == "table" and f'"job_id": {old}' in str(artifact.data)
