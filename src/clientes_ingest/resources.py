"""The composition root: the one place a ``Database``, a ``Storage`` or the run launcher is built.

Everything that needs one (the ingest and recovery flows through their tasks, the webhook API, the SQS
trigger, the CLI, the benchmarks) takes a ``Settings`` and calls these functions, so every door points
at the same database and bucket. When ``CLIENTES_DB_BLOCK`` / ``CLIENTES_S3_BLOCK`` name Prefect blocks
(``blocks/definitions.py``), the database URL and the S3 bucket come from those blocks instead of the
plain settings.
Requires: for blocks, a Prefect API holding them (``clientes-ingest blocks register``).
"""

from __future__ import annotations

from clientes_ingest.db import Database
from clientes_ingest.settings import Settings
from clientes_ingest.storage import LocalStorage, Storage


def open_database(settings: Settings) -> Database:
    """The target database: the ``ClientesDatabase`` block named by ``db_block``, else ``db_url``."""
    if settings.db_block:
        from blocks.definitions import load_database_url

        return Database(load_database_url(settings.db_block), writer=settings.db_writer)
    return Database(settings.db_url, writer=settings.db_writer)


def open_storage(settings: Settings, source: str | None = None) -> Storage:
    """The storage of files: the ``S3Bucket`` block named by ``s3_block``; else S3 when ``storage`` is
    ``s3`` or ``source`` is an ``s3://`` URI (its bucket, so it is read in place); else local storage."""
    if settings.s3_block:
        from blocks.definitions import load_s3_storage

        return load_s3_storage(settings.s3_block)
    if settings.storage == "s3" or (source or "").startswith("s3://"):
        from clientes_ingest.s3 import S3Storage

        return S3Storage.from_settings(settings, source=source)
    return LocalStorage(settings.storage_root)


def open_resources(settings: Settings, source: str | None = None) -> tuple[Database, Storage]:
    """Database and storage of one run (or one service), from the same settings."""
    return open_database(settings), open_storage(settings, source)


def prefect_api_configured() -> bool:
    """Whether a Prefect server is configured (``PREFECT_API_URL`` or the profile), as opposed to the
    ephemeral API Prefect starts for this process alone."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)

