"""Block registration under the Prefect test harness: idempotent, secret-safe, usable against moto."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound
from pydantic import ValidationError

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
from blocks.register import main, register_all, register_blocks
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
def limit_env(monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> Iterator[str]:
    """A database-writers limit name of this test's own (the harness is shared), deleted afterwards."""
    name = f"test-db-writers-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", name)
    monkeypatch.delenv("CLIENTES_DB_WRITE_SLOTS", raising=False)
    yield name
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(name)


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
    assert stored.uri.startswith(f"s3://{block_env}/uploads/") and stored.uri.endswith("/CLIENTES_IN_0125.dat")
    body = aws_s3_client.get_object(Bucket=block_env, Key=stored.uri.split("/", 3)[3])["Body"].read()
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


def test_main_prints_outcomes(block_env: str, limit_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    limit = f"{limit_env} (global concurrency limit, 2 slots)"
    assert lines[:4] == [f"{name}: created" for name in (*NAMES, limit)]
    assert lines[4:] == [f"{name}: unchanged" for name in (*NAMES, limit)]


def test_register_creates_the_db_write_limit_once_and_updates_its_slots(
    block_env: str, limit_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    label = f"{limit_env} (global concurrency limit, 2 slots)"
    assert register_all(load_settings()) == {**{name: "created" for name in NAMES}, label: "created"}
    with get_client(sync_client=True) as client:
        before = client.read_global_concurrency_limit_by_name(limit_env)
        assert (before.limit, before.active, before.active_slots) == (2, True, 0)

        assert register_all(load_settings()) == {**{name: "unchanged" for name in NAMES}, label: "unchanged"}
        assert client.read_global_concurrency_limit_by_name(limit_env).updated == before.updated

        monkeypatch.setenv("CLIENTES_DB_WRITE_SLOTS", "5")
        assert register_all(load_settings())[f"{limit_env} (global concurrency limit, 5 slots)"] == "updated"
        after = client.read_global_concurrency_limit_by_name(limit_env)
        assert (after.id, after.limit, after.active) == (before.id, 5, True)


def test_register_reactivates_a_deactivated_db_write_limit(block_env: str, limit_env: str) -> None:
    label = f"{limit_env} (global concurrency limit, 2 slots)"
    register_all(load_settings())
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(limit_env, GlobalConcurrencyLimitUpdate(active=False))
        assert register_all(load_settings())[label] == "updated"
        assert client.read_global_concurrency_limit_by_name(limit_env).active


def test_an_empty_limit_name_registers_only_the_blocks(block_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", "")
    assert register_all(load_settings()) == {name: "created" for name in NAMES}


def test_db_write_slots_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_DB_WRITE_SLOTS", "0")
    with pytest.raises(ValidationError, match="db_write_slots"):
        load_settings()
