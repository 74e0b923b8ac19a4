"""The composition root: the one place a ``Database``, a ``Storage`` or the run launcher is built.

Everything that needs one (the ingest and recovery flows through their tasks, the webhook API, the SQS
trigger, the CLI, the benchmarks) takes a ``Settings`` and calls these functions, so every door points
at the same database and bucket. When ``CLIENTES_DB_BLOCK`` / ``CLIENTES_S3_BLOCK`` name Prefect blocks
(``blocks/definitions.py``), the database URL and the S3 bucket come from those blocks instead of the
plain settings.
Requires: for blocks, a Prefect API holding them (``clientes-ingest blocks register``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from clientes_ingest.db import Database
from clientes_ingest.settings import Settings
from clientes_ingest.storage import LocalStorage, Storage

if TYPE_CHECKING:
    from deployments.launch import DeploymentLauncher, RunLauncher

logger = logging.getLogger("clientes_ingest.launch")


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



def launch_mode(settings: Settings) -> Literal["deployment", "in-process"]:
    """``settings.launch_mode``, with ``auto`` resolved: deployment when a Prefect API is configured."""
    if settings.launch_mode == "auto":
        return "deployment" if prefect_api_configured() else "in-process"
    return settings.launch_mode


def build_launcher(
    settings: Settings, on_error: Callable[[int | None, BaseException], None] | None = None, *,
    inline: bool = False, tags: tuple[str, ...] = (),
) -> RunLauncher:
    """The launcher of ingest runs of the API and the trigger: runs of ``settings.deployment`` in deployment
    mode (``launch_mode``, or ``auto`` with a Prefect API configured); else runs executed in this process
    with these settings: queued on ``launch_workers`` threads, or ``inline`` (the caller waits, the trigger)."""
    from deployments.launch import DeploymentLauncher, InlineLauncher, InProcessLauncher

    if launch_mode(settings) == "deployment":
        logger.info("runs are created from deployment %s", settings.deployment)
        return DeploymentLauncher(settings.deployment, tags=("clientes-ingest", *tags))
    if inline:
        logger.info("no Prefect API configured: each run executes in this process before the next")
        return InlineLauncher(remember=settings.launch_remember, settings=settings)
    logger.info("no Prefect API configured: runs execute in this process (%d at a time)", settings.launch_workers)
    return InProcessLauncher(workers=settings.launch_workers, remember=settings.launch_remember, on_error=on_error,
                             settings=settings)


def deployment_launcher(deployment: str, tags: tuple[str, ...] = ()) -> DeploymentLauncher:
    """A launcher of runs of one named deployment (the recovery flow's, whatever the launch mode)."""
    from deployments.launch import DeploymentLauncher

    return DeploymentLauncher(deployment, tags=("clientes-ingest", *tags))
