"""Retention (``clientes_ingest.retention``) against real databases (SQLite, PostgreSQL) and real storages
(local directory, moto S3 server), without Prefect: what a purge removes, what it never touches, what a
dry run reports, how a killed purge is completed, and what happens to the content claim."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.loading import load_file, rejects, rows

from clientes_ingest import job_queries, jobs, retention
from clientes_ingest.db import Database, clientes, ingest_file_claims, ingest_jobs, metadata, utcnow
from clientes_ingest.devtools.generator import generate
from clientes_ingest.s3 import S3Storage
from clientes_ingest.settings import parse_age
from clientes_ingest.staging import stage_source
from clientes_ingest.storage import LocalStorage, Storage, StorageError

OLD = dt.timedelta(days=40)
CUTOFF_AGE = dt.timedelta(days=30)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each test runs with local storage and with S3 (a bucket on the moto server)."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    client, bucket = request.getfixturevalue("aws_s3_client"), request.getfixturevalue("aws_bucket")
    return S3Storage(client, bucket, "uploads/")


def make_file(tmp_path: Path, name: str, seed: int, lines: int = 60) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    generate(path, lines=lines, error_rate=0.3, seed=seed)
    return path


def load(db: Database, path: Path, storage: Storage, **kwargs: Any) -> jobs.Registration:
    return load_file(db, path, Path("unused"), chunk_size=1024, storage=storage, **kwargs)


def age(db: Database, job_id: int, by: dt.timedelta = OLD, **values: Any) -> None:
    """Pretend the job finished ``by`` ago (and set other columns, e.g. a status)."""
    with db.engine.begin() as conn:
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id)
                     .values(finished_at=utcnow() - by, **values))


def job_row(db: Database, job_id: int) -> sa.RowMapping:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.id == job_id)).mappings().one()


def claims(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {sha: job for sha, job in conn.execute(sa.select(ingest_file_claims.c.sha256,
                                                                ingest_file_claims.c.job_id))}


def purge(db: Database, storage: Storage, **kwargs: Any) -> list[retention.PurgedJob]:
    return retention.purge_old_jobs(db.engine, lambda uri: storage, utcnow() - CUTOFF_AGE, **kwargs)


def snapshot(db: Database, storage: Storage, job_ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """Everything a job owns: its object's existence, rejects and rows."""
    return {j: (storage.exists(job_row(db, j)["source_uri"]), rejects(db, j), rows(db, j)) for j in job_ids}


def test_parse_age() -> None:
    assert parse_age("30d") == dt.timedelta(days=30)
    assert parse_age(" 2w ") == dt.timedelta(weeks=2)
    assert parse_age("12H") == dt.timedelta(hours=12)
    assert parse_age("1.5h") == dt.timedelta(minutes=90)
    for bad in ("30", "d", "0d", "-1d", "30 days", ""):
        with pytest.raises(ValueError, match="age"):
            parse_age(bad)


def test_purge_removes_old_jobs_and_nothing_else(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    old_ok = load(db, make_file(tmp_path, "CLIENTES_IN_0125.dat", 1), storage).job_id
    old_failed = load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage).job_id
    running = load(db, make_file(tmp_path, "CLIENTES_IN_0325.dat", 3), storage).job_id
    recent = load(db, make_file(tmp_path, "CLIENTES_IN_0425.dat", 4), storage).job_id
    newest = load(db, make_file(tmp_path, "CLIENTES_IN_0525.dat", 5), storage).job_id
    age(db, old_ok)
    age(db, old_failed, status="failed")
    age(db, running, status="running")  # a run holds it: never purged, whatever its dates say
    age(db, recent, by=dt.timedelta(days=29))
    pending = jobs.create_pending_job(db.engine, "s3://elsewhere/x.dat", "x.dat")
    age(db, pending, status="pending")
    kept_ids = [running, recent, newest]
    before = snapshot(db, storage, kept_ids)
    assert all(before[j][0] and before[j][1] and before[j][2] for j in kept_ids)
    expected = {j: (len(rejects(db, j)), len(rows(db, j))) for j in (old_ok, old_failed)}
    old_uris = {j: job_row(db, j)["source_uri"] for j in (old_ok, old_failed)}
    old_shas = {job_row(db, j)["sha256"] for j in (old_ok, old_failed)}

    done = purge(db, storage, batch_lines=7)

    assert [(p.job_id, p.object, p.rejects_deleted, p.rows_deleted, p.claim_released) for p in done] == [
        (j, "deleted", *expected[j], True) for j in (old_ok, old_failed)]
    for j in (old_ok, old_failed):
        assert not storage.exists(old_uris[j])
        assert rejects(db, j) == [] and rows(db, j) == []
        row = job_row(db, j)
        assert row["purge_started_at"] and row["purged_at"] and row["rows_purged_at"]
    assert old_shas.isdisjoint(claims(db))
    assert snapshot(db, storage, kept_ids) == before
    assert job_row(db, pending)["purge_started_at"] is None
    assert purge(db, storage) == []  # nothing left to do


def test_the_newest_completed_job_is_kept_whatever_its_age(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    first = load(db, make_file(tmp_path, "CLIENTES_IN_0125.dat", 1), storage).job_id
    last = load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage).job_id
    age(db, first)
    age(db, last)
    before = snapshot(db, storage, [last])
    assert [p.job_id for p in purge(db, storage)] == [first]
    assert snapshot(db, storage, [last]) == before


def test_dry_run_reports_what_a_purge_removes_and_changes_nothing(
    db_url: str, storage: Storage, tmp_path: Path
) -> None:
    db = Database(db_url)
    ids = [load(db, make_file(tmp_path, f"CLIENTES_IN_0{m}25.dat", m), storage).job_id for m in (1, 2, 3)]
    for j in ids[:2]:
        age(db, j)
    before = snapshot(db, storage, ids)
    preview = purge(db, storage, dry_run=True)
    assert snapshot(db, storage, ids) == before
    assert all(job_row(db, j)["purge_started_at"] is None for j in ids)
    assert [p.object for p in preview] == ["would be deleted"] * 2
    done = purge(db, storage)
    assert [(p.job_id, p.rejects_deleted, p.rows_deleted, p.claim_released) for p in preview] == [
        (p.job_id, p.rejects_deleted, p.rows_deleted, p.claim_released) for p in done]
    assert all(p.rows_deleted > 0 and p.rejects_deleted > 0 for p in done)


def test_a_purged_file_can_be_loaded_again_as_a_new_job(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    path = make_file(tmp_path, "CLIENTES_IN_0125.dat", 1)
    first = load(db, path, storage).job_id
    loaded = (rows(db, first), rejects(db, first))
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, first)
    purge(db, storage)
    again = load(db, path, storage)
    assert again.action == jobs.Action.LOAD and again.job_id != first
    assert (rows(db, again.job_id), rejects(db, again.job_id)) == loaded
    assert claims(db)[job_row(db, first)["sha256"]] == again.job_id
    with pytest.raises(job_queries.JobError, match=rf"job {first} \(completed_with_rejects\) was purged"):
        jobs.register_job(db.engine, jobs_staged(path, storage), job_id=first)


def jobs_staged(path: Path, storage: Storage) -> jobs.StagedFile:
    return stage_source(str(path), storage, 1024)


def test_keep_rows_keeps_the_rows_and_the_claim_then_a_full_purge_removes_them(
    db_url: str, storage: Storage, tmp_path: Path
) -> None:
    db = Database(db_url)
    path = make_file(tmp_path, "CLIENTES_IN_0125.dat", 1)
    first = load(db, path, storage).job_id
    kept_rows = rows(db, first)
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, first)
    (done,) = purge(db, storage, keep_rows=True)
    assert (done.object, done.rows_deleted, done.claim_released, done.rows_kept) == ("deleted", 0, False, True)
    assert rows(db, first) == kept_rows and rejects(db, first) == []
    # The rows are still there: the same content is "already loaded", and loads nothing twice.
    again = load(db, path, storage)
    assert (again.action, again.job_id) == (jobs.Action.ALREADY_LOADED, first)
    assert rows(db) == kept_rows + rows(db, first + 1)
    assert purge(db, storage, keep_rows=True) == []
    age(db, first)  # load_file finalized the job again
    (full,) = purge(db, storage)
    assert (full.job_id, full.object, full.rejects_deleted, full.rows_deleted, full.claim_released) == (
        first, "kept", 0, len(kept_rows), True)
    assert rows(db, first) == []


def test_a_purged_failed_job_is_never_resumed(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    path = make_file(tmp_path, "CLIENTES_IN_0125.dat", 1)
    failed = load(db, path, storage).job_id
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, failed, status="failed")
    purge(db, storage, keep_rows=True)
    with pytest.raises(job_queries.JobError, match=rf"job {failed} \(failed\) was purged .* with force"):
        jobs.register_job(db.engine, jobs_staged(path, storage))
    forced = jobs.register_job(db.engine, jobs_staged(path, storage), force=True)
    assert forced.action == jobs.Action.LOAD and forced.job_id != failed


def test_a_job_taken_over_after_it_was_found_is_left_alone(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    path = make_file(tmp_path, "CLIENTES_IN_0125.dat", 1)
    failed = load(db, path, storage).job_id
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, failed, status="failed")
    cutoff = utcnow() - CUTOFF_AGE
    (found,) = retention.find_purgeable(db.engine, cutoff)
    resumed = jobs.register_job(db.engine, jobs_staged(path, storage))  # a rerun takes the failed job over
    assert (resumed.job_id, resumed.action) == (failed, jobs.Action.RESUME)
    before = snapshot(db, storage, [failed])
    assert retention.purge_job(db.engine, found, lambda uri: storage, cutoff) is None
    assert snapshot(db, storage, [failed]) == before
    assert job_row(db, failed)["purge_started_at"] is None


class CrashAfterDelete:
    """A storage whose delete removes the object, then fails as if the purging process died there."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self.inner, name)  # type: ignore[no-any-return]

    def delete(self, uri: str) -> None:
        self.inner.delete(uri)
        raise StorageError("simulated crash after the delete")


def test_a_purge_that_died_midway_is_completed_by_the_next(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    path = make_file(tmp_path, "CLIENTES_IN_0125.dat", 1)
    first = load(db, path, storage).job_id
    n_rows, n_rejects = len(rows(db, first)), len(rejects(db, first))
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, first)
    staged = jobs_staged(path, storage)  # (staging a local path stores it: do it before the purge)
    with pytest.raises(retention.PurgeError, match=f"job {first}: cannot delete"):
        retention.purge_old_jobs(db.engine, lambda uri: CrashAfterDelete(storage), utcnow() - CUTOFF_AGE)  # type: ignore[arg-type, return-value]
    half = job_row(db, first)
    assert half["purge_started_at"] is not None and half["purged_at"] is None
    assert len(rows(db, first)) == n_rows  # the crash came before the rows
    # Fenced: no run may resume the half-purged job, and its claim is already released.
    assert job_row(db, first)["sha256"] not in claims(db)
    with pytest.raises(job_queries.JobError, match="was purged"):
        jobs.register_job(db.engine, staged, job_id=first)
    (done,) = purge(db, storage)
    assert (done.job_id, done.object, done.rejects_deleted, done.rows_deleted) == (first, "missing", n_rejects, n_rows)
    assert rows(db, first) == [] and rejects(db, first) == []


def test_rows_are_deleted_in_batches(db_url: str, storage: Storage, tmp_path: Path) -> None:
    db = Database(db_url)
    first = load(db, make_file(tmp_path, "CLIENTES_IN_0125.dat", 1, lines=100), storage).job_id
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, first)
    deletes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM CLIENTES"):
            deletes.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        (done,) = purge(db, storage, batch_lines=10)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert done.rows_deleted > 0 and len(deletes) >= 9  # 100 lines in windows of 10
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(clientes)
                            .where(clientes.c.JobId == first)).scalar_one() == 0


def test_an_object_another_job_reads_is_not_deleted(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    storage = LocalStorage(tmp_path / "store")  # content-addressed: a forced reload reads the same object
    path = make_file(tmp_path, "CLIENTES_IN_0125.dat", 1)
    first = load(db, path, storage).job_id
    second = load(db, path, storage, force=True).job_id
    uri = job_row(db, first)["source_uri"]
    assert job_row(db, second)["source_uri"] == uri
    age(db, first)
    (done,) = purge(db, storage)
    assert (done.job_id, done.object) == (first, "shared")
    assert storage.exists(uri) and rows(db, second)
    assert done.claim_released is False  # the claim had moved to the forced job, which keeps it


def test_a_database_from_before_retention_gets_the_new_columns(db_url: str) -> None:
    db = Database(db_url)
    old = sa.MetaData()
    sa.Table("ingest_jobs", old, *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                                   for c in ingest_jobs.columns if "purge" not in c.name])
    metadata.drop_all(db.engine)  # pg_url's schema is fresh: start from nothing, then the old jobs table
    old.create_all(db.engine)
    assert "purged_at" not in {c["name"] for c in sa.inspect(db.engine).get_columns("ingest_jobs")}
    db.ensure_schema()
    db.ensure_schema()  # idempotent
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("ingest_jobs")}
    assert {"purge_started_at", "purged_at", "rows_purged_at"} <= columns
    assert retention.find_purgeable(db.engine, utcnow()) == []


def test_every_version_of_a_dropped_object_is_deleted(db_url: str, aws_s3_client: Any, aws_bucket: str,
                                                      tmp_path: Path) -> None:
    """A file dropped twice under one key in a versioned bucket (``aws init`` turns versioning on): the
    purge removes both versions, not just the current one behind a delete marker."""
    db = Database(db_url)
    aws_s3_client.put_bucket_versioning(Bucket=aws_bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = S3Storage(aws_s3_client, aws_bucket, "uploads/")
    key = "incoming/CLIENTES_IN_0125.dat"
    aws_s3_client.put_object(Bucket=aws_bucket, Key=key, Body=b"an earlier drop of the day\n")
    aws_s3_client.put_object(Bucket=aws_bucket, Key=key, Body=make_file(tmp_path, "a.dat", 1).read_bytes())
    db.ensure_schema()
    first = jobs.register_job(db.engine, stage_source(f"s3://{aws_bucket}/{key}", storage, 1024)).job_id
    jobs.finalize_job(db.engine, first)
    load(db, make_file(tmp_path, "CLIENTES_IN_0225.dat", 2), storage)
    age(db, first)
    (done,) = purge(db, storage)
    assert (done.job_id, done.object) == (first, "deleted")
    listed = aws_s3_client.list_object_versions(Bucket=aws_bucket, Prefix=key)
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []
