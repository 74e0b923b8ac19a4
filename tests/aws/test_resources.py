"""clientes_ingest.resources, the one builder of Database and Storage: plain settings, S3 sources, and
named blocks, which every door (flow tasks, recovery, webhook API) honours alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from support.aws import unique_aws_name
from support.loading import load_file

from blocks.definitions import ClientesDatabase, S3Bucket, aws_credentials_from_settings
from clientes_ingest import recovery_tasks, resources, tasks
from clientes_ingest.db import Database
from clientes_ingest.s3 import S3Storage
from clientes_ingest.settings import Settings, load_settings
from clientes_ingest.storage import LocalStorage
from deployments.api import create_app


def test_plain_settings_give_sqlite_and_local_storage(tmp_path: Path) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'x.db'}", storage_root=tmp_path / "store")
    db, storage = resources.open_resources(settings)
    assert db.url.database == str(tmp_path / "x.db")
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path / "store"


def test_s3_setting_or_an_s3_source_gives_s3_storage_in_the_source_bucket(aws_env: str) -> None:
    settings = Settings(storage="s3", s3_bucket="configured", s3_upload_prefix="up/")
    storage = resources.open_storage(settings)
    assert isinstance(storage, S3Storage) and (storage.bucket, storage.prefix) == ("configured", "up/")
    elsewhere = resources.open_storage(Settings(storage="local"), "s3://other-bucket/incoming/x.dat")
    assert isinstance(elsewhere, S3Storage) and elsewhere.bucket == "other-bucket"


@pytest.fixture
def named_blocks(prefect_harness: None, aws_bucket: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A database block and an S3 bucket block under names of this test, while the plain settings point
    at another database and another bucket: whoever ignores the block names reads the wrong ones."""
    suffix = uuid.uuid4().hex[:8]
    names = {"db": f"clientes-db-{suffix}", "s3": f"clientes-s3-{suffix}"}
    block_db_url = f"sqlite:///{tmp_path / 'from-block.db'}"
    ClientesDatabase(url=block_db_url).save(names["db"])
    credentials = aws_credentials_from_settings(load_settings())
    S3Bucket(bucket_name=aws_bucket, bucket_folder="blocked/", credentials=credentials).save(names["s3"])
    monkeypatch.setenv("CLIENTES_DB_URL", f"sqlite:///{tmp_path / 'plain.db'}")
    monkeypatch.setenv("CLIENTES_S3_BUCKET", unique_aws_name("not-this-bucket"))
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_DB_BLOCK", names["db"])
    monkeypatch.setenv("CLIENTES_S3_BLOCK", names["s3"])
    yield {"db_url": block_db_url, "bucket": aws_bucket, **names}
    with get_client(sync_client=True) as client:
        for name, slug in ((names["db"], "clientes-database"), (names["s3"], "s3-bucket")):
            client.delete_block_document(client.read_block_document_by_name(name, block_type_slug=slug).id)


def assert_from_blocks(db: Database, storage: Any, blocks: dict[str, Any]) -> None:
    assert db.url.render_as_string(hide_password=False) == blocks["db_url"]
    assert isinstance(storage, S3Storage) and (storage.bucket, storage.prefix) == (blocks["bucket"], "blocked/")


def test_named_blocks_are_used_by_the_flow_tasks_and_the_recovery(named_blocks: dict[str, Any]) -> None:
    settings = load_settings()
    assert_from_blocks(*resources.open_resources(settings, "/tmp/CLIENTES_IN_0125.dat"), named_blocks)  # noqa: S108
    assert_from_blocks(*tasks.load_resources.fn(settings, "/tmp/CLIENTES_IN_0125.dat"), named_blocks)  # noqa: S108
    db = recovery_tasks.load_database.fn(settings)
    assert db.url.render_as_string(hide_password=False) == named_blocks["db_url"]


def test_the_api_honours_the_block_settings(named_blocks: dict[str, Any], sample_file: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_API_TOKEN", "resources-test-token")
    block_db = Database(named_blocks["db_url"])
    job_id = load_file(block_db, sample_file, tmp_path / "loaded").job_id
    app = create_app(launcher=object())  # type: ignore[arg-type]  # no run is started here
    ctx = app.state.ctx
    assert_from_blocks(ctx.db, ctx.storage, named_blocks)
    with TestClient(app) as client:
        response = client.get(f"/jobs/{job_id}", headers={"Authorization": "Bearer resources-test-token"})
    assert response.status_code == 200, response.text
    assert response.json()["fileName"] == sample_file.name
