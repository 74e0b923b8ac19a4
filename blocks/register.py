"""Create or update the clientes-ingest blocks from ``CLIENTES_*`` settings, idempotently.

Run as ``python -m blocks.register`` (or ``clientes-ingest blocks register``). A block whose stored
values already match is not saved again, so a second run changes nothing. Requires a Prefect API
(``PREFECT_API_URL``, or Prefect's ephemeral server) and the settings of ``clientes_ingest.settings``:
``CLIENTES_DB_URL``, ``CLIENTES_S3_BUCKET``, ``CLIENTES_S3_PREFIX``, ``CLIENTES_AWS_*``; the block
names follow ``CLIENTES_DB_BLOCK`` / ``CLIENTES_S3_BLOCK`` when set. It also creates or updates the
global concurrency limit ``CLIENTES_DB_WRITE_LIMIT`` (default ``clientes-db-writers``) with
``CLIENTES_DB_WRITE_SLOTS`` slots (default 2), which caps the chunks writing to the database at once
across every run (docs/concurrency.md); an empty ``CLIENTES_DB_WRITE_LIMIT`` skips it.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, cast

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, SecretBytes, SecretStr

from blocks.definitions import (
    AWS_BLOCK,
    DB_BLOCK,
    S3_BLOCK,
    AwsCredentials,
    ClientesDatabase,
    S3Bucket,
    aws_credentials_from_settings,
    database_from_settings,
    s3_bucket_from_settings,
)
from clientes_ingest.settings import Settings, load_settings

Outcome = Literal["created", "updated", "unchanged"]


def register_blocks(settings: Settings) -> dict[str, str]:
    """Upsert ``clientes-aws``, ``clientes-s3`` and ``clientes-db``; return name -> created/updated/unchanged."""
    results: dict[str, str] = {}
    results[AWS_BLOCK] = upsert_block(aws_credentials_from_settings(settings), AWS_BLOCK)
    # Reference the saved credentials document, so rotating keys in clientes-aws reaches the bucket block.
    credentials = cast(AwsCredentials, AwsCredentials.load(AWS_BLOCK))
    s3_name = settings.s3_block or S3_BLOCK
    results[s3_name] = upsert_block(s3_bucket_from_settings(settings, credentials), s3_name)
    db_name = settings.db_block or DB_BLOCK
    results[db_name] = upsert_block(database_from_settings(settings), db_name)
    return results


def register_all(settings: Settings) -> dict[str, str]:
    """The blocks, then the database-writers limit (when named); label -> created/updated/unchanged."""
    results = register_blocks(settings)
    if settings.db_write_limit:
        outcome = upsert_concurrency_limit(settings.db_write_limit, settings.db_write_slots)
        results[f"{settings.db_write_limit} (global concurrency limit, {settings.db_write_slots} slots)"] = outcome
    return results


def upsert_concurrency_limit(name: str, slots: int) -> Outcome:
    """Create the global concurrency limit ``name`` with ``slots`` slots, or set an existing one to them.

    An existing limit is left alone when it already has ``slots`` slots, is active and does not decay
    (a decaying limit is a rate limit, not a cap on concurrent writers). Slots held at the time stay held.
    """
    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots, active=True))
            return "created"
        if current.limit == slots and current.active and not current.slot_decay_per_second:
            return "unchanged"
        client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=slots, active=True, slot_decay_per_second=0.0))
        return "updated"


def upsert_block(block: Block, name: str) -> Outcome:
    """Save ``block`` as ``name`` unless a document with the same values (secrets included) exists."""
    try:
        current = cast(Block, type(block).load(name))  # sync call: a block, not a coroutine
    except (ValueError, ObjectNotFound) as exc:
        # Block.load reports a missing document (or block type) as ValueError("Unable to find ...").
        if "Unable to find" not in str(exc) and not isinstance(exc, ObjectNotFound):
            raise
        block.save(name)
        return "created"
    if _plain(current) == _plain(block) and _same_references(current, block):
        return "unchanged"
    block.save(name, overwrite=True)
    return "updated"


def _plain(value: Any) -> Any:
    """Field values with secrets revealed and nested blocks expanded, for comparison only."""
    if isinstance(value, SecretStr | SecretBytes):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _same_references(current: Block, wanted: Block) -> bool:
    """Nested blocks must point at the same saved documents (not merely equal copies)."""
    for name in type(wanted).model_fields:
        new = getattr(wanted, name)
        if isinstance(new, Block) and new._block_document_id is not None:
            old = getattr(current, name)
            if not isinstance(old, Block) or old._block_document_id != new._block_document_id:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Register the blocks and the database-writers limit; print one line each."""
    del argv  # no options: everything comes from CLIENTES_* settings
    for name, outcome in register_all(load_settings()).items():
        print(f"{name}: {outcome}")
    return 0


__all__ = ["ClientesDatabase", "S3Bucket", "main", "register_all", "register_blocks", "upsert_block",
           "upsert_concurrency_limit"]

if __name__ == "__main__":
    sys.exit(main())
