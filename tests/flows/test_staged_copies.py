"""Copies a run stores in S3 and then does not use: a rerun of content already loaded (or refused) through
the flow or ``clientes-ingest run`` deletes the copy it just made, so the bucket holds exactly the objects
the job rows reference (retention purges those); an in-place ``s3://`` source, the caller's own object,
is never deleted. On the moto server, with SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.garbage import random_bytes

from clientes_ingest import retention, tasks
from clientes_ingest.cli import main
from clientes_ingest.db import Database, ingest_jobs
from clientes_ingest.devtools.generator import generate
from clientes_ingest.s3 import S3Storage
from clientes_ingest.storage import LocalStorage, StorageError
from flows.ingest import IngestFailed, ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str, aws_bucket: str) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", sqlite_url)
    monkeypatch.setenv("CLIENTES_STORAGE", "s3")
    monkeypatch.setenv("CLIENTES_S3_UPLOAD_PREFIX", "uploads/")
    return Database(sqlite_url)


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=300, seed=5)
    return path


def bucket_uris(client: Any, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {f"s3://{bucket}/{entry['Key']}" for page in pages for entry in page.get("Contents", [])}


def job_uris(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(sa.select(ingest_jobs.c.source_uri)).scalars())


def test_discarding_a_copy_is_a_task_with_retries() -> None:
    assert tasks.discard_staged_copy.retries == 3
    assert len(tasks.discard_staged_copy.retry_delay_seconds) == 3


def test_a_rerun_of_loaded_content_deletes_its_own_copy_and_force_keeps_its_job_s_object(
    s3_env: Database, clients_file: Path, aws_s3_client: Any, aws_bucket: str
) -> None:
    first = ingest_clientes(source=str(clients_file))
    assert first.action == "load" and len(bucket_uris(aws_s3_client, aws_bucket)) == 1
    again = ingest_clientes(source=str(clients_file))
    assert (again.action, again.job_id) == ("already_loaded", first.job_id)
    assert bucket_uris(aws_s3_client, aws_bucket) == job_uris(s3_env) == {first.source_uri}

    forced = ingest_clientes(source=str(clients_file), force=True)  # a new job: its copy is its own
    assert forced.source_uri != first.source_uri
    assert bucket_uris(aws_s3_client, aws_bucket) == job_uris(s3_env) == {first.source_uri, forced.source_uri}


def test_a_rerun_of_refused_content_deletes_its_own_copy(
    s3_env: Database, tmp_path: Path, aws_s3_client: Any, aws_bucket: str
) -> None:
    garbage = random_bytes(tmp_path / "CLIENTES_IN_0425.dat")
    for _ in range(2):
        with pytest.raises(IngestFailed):
            ingest_clientes(source=str(garbage))
    assert len(job_uris(s3_env)) == 1
    assert bucket_uris(aws_s3_client, aws_bucket) == job_uris(s3_env)


def test_an_in_place_source_is_never_deleted_even_when_another_key_loaded_its_content(
    s3_env: Database, clients_file: Path, aws_s3_client: Any, aws_bucket: str
) -> None:
    body = clients_file.read_bytes()
    for key in ("incoming/a/CLIENTES_IN_0425.dat", "incoming/b/CLIENTES_IN_0425.dat"):
        aws_s3_client.put_object(Bucket=aws_bucket, Key=key, Body=body)
    first_uri, second_uri = (f"s3://{aws_bucket}/incoming/{d}/CLIENTES_IN_0425.dat" for d in "ab")
    first = ingest_clientes(source=first_uri)
    assert first.source_uri == first_uri
    for source in (second_uri, first_uri):  # the same bytes under another key, then the job's own key
        assert ingest_clientes(source=source).action == "already_loaded"
    assert bucket_uris(aws_s3_client, aws_bucket) == {first_uri, second_uri}  # nothing staged, nothing deleted


def test_the_cli_rerun_leaves_only_the_job_s_object(
    s3_env: Database, clients_file: Path, sqlite_url: str, aws_s3_client: Any, aws_bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["run", str(clients_file), "--db", sqlite_url, "--quiet"]
    assert main(args) == 0
    assert main(args) == 0
    assert "was already loaded by job 1" in capsys.readouterr().out
    assert bucket_uris(aws_s3_client, aws_bucket) == job_uris(s3_env)
    assert len(job_uris(s3_env)) == 1


def test_only_an_unreferenced_s3_copy_stored_by_this_run_is_deleted(
    s3_env: Database, clients_file: Path, aws_s3_client: Any, aws_bucket: str, tmp_path: Path
) -> None:
    first = ingest_clientes(source=str(clients_file))
    engine, job_uri = s3_env.engine, first.source_uri
    s3 = S3Storage(aws_s3_client, aws_bucket, "uploads/")
    with clients_file.open("rb") as handle:
        copy = s3.store(handle, clients_file.name).uri

    # The caller's own object, the job's object, an object a job row references: kept.
    assert retention.discard_unregistered_copy(engine, s3, copy, copy, job_uri) == "in place"
    assert retention.discard_unregistered_copy(engine, s3, str(clients_file), job_uri, job_uri) == "registered"
    with engine.begin() as conn:
        conn.execute(ingest_jobs.update().values(source_uri=copy))
    assert retention.discard_unregistered_copy(engine, s3, str(clients_file), copy, job_uri) == "referenced"
    with engine.begin() as conn:
        conn.execute(ingest_jobs.update().values(source_uri=job_uri))
    assert s3.exists(copy)
    # Local storage is content-addressed: another run may be about to register the same object.
    local = LocalStorage(tmp_path / "store")
    with clients_file.open("rb") as handle:
        local_copy = local.store(handle, "OTHER_NAME.dat").uri
    assert retention.discard_unregistered_copy(engine, local, str(clients_file), local_copy, job_uri) == "shared"
    assert local.exists(local_copy)

    assert retention.discard_unregistered_copy(engine, s3, str(clients_file), copy, job_uri) == "deleted"
    assert not s3.exists(copy) and bucket_uris(aws_s3_client, aws_bucket) == {job_uri}


def test_a_copy_that_cannot_be_deleted_is_retried_and_does_not_fail_the_run(
    s3_env: Database, clients_file: Path, aws_s3_client: Any, aws_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ingest_clientes(source=str(clients_file))
    attempts: list[str] = []

    def refuse(self: S3Storage, uri: str) -> None:
        attempts.append(uri)
        raise StorageError(f"cannot delete {uri}: AccessDenied")

    monkeypatch.setattr(S3Storage, "delete", refuse)
    again = ingest_clientes(source=str(clients_file))
    assert (again.action, again.job_id) == ("already_loaded", first.job_id)
    (orphan,) = bucket_uris(aws_s3_client, aws_bucket) - {first.source_uri}
    assert attempts == [orphan] * 4  # the first try and three retries
