"""Block registration under the Prefect test harness: idempotent, secret-safe, usable against moto."""

from __future__ import annotations

import io
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from blocks.definitions import (
    AWS_BLOCK,
    DB_BLOCK,
    S3_BLOCK,
    AwsCredentials,
    ClientesDatabase,
    S3Bucket,
    load_database_url,
    load_s3_storage,
)
from blocks.register import main, register_blocks
from clientes_ingest.settings import load_settings

NAMES = (AWS_BLOCK, S3_BLOCK, DB_BLOCK)
BLOCK_TYPES = {AWS_BLOCK: "aws-credentials", S3_BLOCK: "s3-bucket", DB_BLOCK: "clientes-database"}


def block_documents() -> dict[str, Any]:
    """name -> (id, updated, data) of our block documents, as the API stores them."""
    out = {}
    with get_client(sync_client=True) as client:
        for name, slug in BLOCK_TYPES.items():
            try:
                doc = client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=False)
            except Exception:  # noqa: S112 - absent is a valid state here
                continue
            out[name] = (doc.id, doc.updated, doc.data)
    return out


@pytest.fixture
def clean_blocks(prefect_harness: None) -> None:
    """The harness is shared by the session: start each test without our block documents."""
    with get_client(sync_client=True) as client:
        for name, slug in BLOCK_TYPES.items():
            try:
                doc = client.read_block_document_by_name(name, block_type_slug=slug)
            except Exception:  # noqa: S112
                continue
            client.delete_block_document(doc.id)


@pytest.fixture
def block_env(aws_bucket: str, monkeypatch: pytest.MonkeyPatch, clean_blocks: None) -> str:
    monkeypatch.setenv("CLIENTES_DB_URL", "postgresql+psycopg://app:db-pass-123@db:5432/clientes")
    monkeypatch.setenv("CLIENTES_S3_UPLOAD_PREFIX", "uploads/")
    monkeypatch.delenv("CLIENTES_DB_BLOCK", raising=False)
    monkeypatch.delenv("CLIENTES_S3_BLOCK", raising=False)
    return aws_bucket


def test_register_twice_is_a_no_op(block_env: str) -> None:
    first = register_blocks(load_settings())
    assert first == {name: "created" for name in NAMES}
    before = block_documents()
    assert set(before) == set(NAMES)

    second = register_blocks(load_settings())
    assert second == {name: "unchanged" for name in NAMES}
    assert block_documents() == before  # same ids, same `updated` timestamps, same data


def test_changed_setting_updates_only_that_block(block_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    register_blocks(load_settings())
    before = block_documents()
    monkeypatch.setenv("CLIENTES_S3_UPLOAD_PREFIX", "drop/")
    assert register_blocks(load_settings()) == {AWS_BLOCK: "unchanged", S3_BLOCK: "updated", DB_BLOCK: "unchanged"}
    after = block_documents()
    assert after[AWS_BLOCK] == before[AWS_BLOCK] and after[DB_BLOCK] == before[DB_BLOCK]
    assert S3Bucket.load(S3_BLOCK).bucket_folder == "drop/"

    # A rotated secret is a change too, although the API only ever shows it masked.
    monkeypatch.setenv("CLIENTES_DB_URL", "postgresql+psycopg://app:rotated-456@db:5432/clientes")
    assert register_blocks(load_settings())[DB_BLOCK] == "updated"
    assert load_database_url() == "postgresql+psycopg://app:rotated-456@db:5432/clientes"


def test_secrets_are_stored_masked(block_env: str) -> None:
    register_blocks(load_settings())
    docs = block_documents()
    assert "db-pass-123" not in str(docs[DB_BLOCK][2])
    assert "testing-secret" not in str(docs[AWS_BLOCK][2])
    assert ClientesDatabase.load(DB_BLOCK).url.get_secret_value().endswith("db-pass-123@db:5432/clientes")


def test_s3_block_references_the_credentials_block_and_its_endpoint(block_env: str, aws_env: str) -> None:
    register_blocks(load_settings())
    bucket = S3Bucket.load(S3_BLOCK)
    credentials = AwsCredentials.load(AWS_BLOCK)
    assert bucket.bucket_name == block_env
    assert bucket.credentials._block_document_id == credentials._block_document_id
    assert credentials.aws_client_parameters.endpoint_url == aws_env


def test_loaded_storage_works_against_moto(block_env: str, aws_s3_client: Any) -> None:
    register_blocks(load_settings())
    storage = load_s3_storage()
    assert storage.bucket == block_env and storage.prefix == "uploads/"
    stored = storage.store(io.BytesIO(b"Ana|Perez|1|Activo|1/2/2020|true|false\n"), "CLIENTES_IN_0125.dat")
    body = aws_s3_client.get_object(Bucket=block_env, Key="uploads/CLIENTES_IN_0125.dat")["Body"].read()
    assert body.startswith(b"Ana|Perez")
    assert b"".join(storage.iter_range(stored.uri, 0, 3)) == b"Ana"


def test_custom_block_names_from_settings(block_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_DB_BLOCK", "clientes-db-staging")
    result = register_blocks(load_settings())
    assert "clientes-db-staging" in result and DB_BLOCK not in result
    assert load_database_url("clientes-db-staging").startswith("postgresql+psycopg://")
    with get_client(sync_client=True) as client:
        client.delete_block_document(
            client.read_block_document_by_name("clientes-db-staging", block_type_slug="clientes-database").id
        )


def test_main_prints_outcomes(block_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [f"{name}: created" for name in NAMES]
    assert lines[3:] == [f"{name}: unchanged" for name in NAMES]
