"""Prefect tasks: one IO step each, with its retry policy declared next to it.

The work itself lives in plain modules (staging, jobs, loader) tested without Prefect; these wrappers
add retries, names and logging. Dependencies arrive as arguments (a ``Database``, a ``Storage``):
both are small picklable handles, so the same tasks run on the thread pool, Dask or Kubernetes.
Retry delays grow from ``CLIENTES_RETRY_BACKOFF_SECONDS`` (default 2 s: 2, 8, 32 s, with jitter).
Requires: prefect 3.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from clientes_ingest import chunk_worker, jobs, loader, progress, report, staging
from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import Database
from clientes_ingest.settings import Settings
from clientes_ingest.storage import LocalStorage, Storage

CHUNK_RETRIES = 3


def backoff(retries: int) -> list[float]:
    """Delays before each retry: base, 4x base, 16x base (base from the environment, default 2 s)."""
    base = float(os.environ.get("CLIENTES_RETRY_BACKOFF_SECONDS", "2"))
    return [base * 4**attempt for attempt in range(retries)]


def open_storage(settings: Settings, source: str | None = None) -> Storage:
    """The storage a run uses: S3 when configured or when the source is an ``s3://`` URI, else local."""
    if settings.storage == "s3" or (source or "").startswith("s3://"):
        from clientes_ingest.s3 import S3Storage

        return S3Storage.from_settings(settings, source=source)
    return LocalStorage(settings.storage_root)


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def load_resources(settings: Settings, source: str) -> tuple[Database, Storage]:
    """Build the database and storage handles once per run, from named blocks when configured."""
    if settings.db_block or settings.s3_block:
        from blocks.definitions import load_database_url, load_s3_storage

        database = Database(load_database_url(settings.db_block)) if settings.db_block else Database(settings.db_url)
        storage = load_s3_storage(settings.s3_block) if settings.s3_block else open_storage(settings, source)
        return database, storage
    return Database(settings.db_url), open_storage(settings, source)


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def stage_file(source: str, storage: Storage, chunk_size: int) -> jobs.StagedFile:
    """Store or scan the source once: size, sha256 and the chunk plan."""
    staged = staging.stage_source(source, storage, chunk_size)
    get_run_logger().info("staged %s: %d bytes, %d lines, %d chunks, sha256 %s", staged.uri, staged.size,
                          staged.total_lines, len(staged.chunks), staged.sha256[:12])
    return staged


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def register_job(
    db: Database, staged: jobs.StagedFile, force: bool, job_id: int | None, flow_run_id: str | None,
    lease_seconds: float,
) -> jobs.Registration:
    """Create the schema if missing, then register (or find) the job and its chunks."""
    db.ensure_schema()
    return jobs.register_job(db.engine, staged, force=force, job_id=job_id, flow_run_id=flow_run_id,
                             lease_seconds=lease_seconds)


@task(retries=CHUNK_RETRIES, retry_delay_seconds=backoff(CHUNK_RETRIES), retry_jitter_factor=0.5,
      cache_policy=NO_CACHE, task_run_name="process-chunk-{chunk.index}")
def process_chunk(
    db: Database, storage: Storage, job_id: int, uri: str, chunk: ChunkSpec, block_size: int, max_line_bytes: int,
    isolation: str = "thread",
) -> loader.ChunkResult:
    """Load one chunk's rows and rejects and mark it done, all in one transaction (here, or in a child)."""
    if isolation == "subprocess":
        result = chunk_worker.run_chunk(db, storage, job_id, uri, chunk, block_size=block_size,
                                        max_line_bytes=max_line_bytes)
        progress.emit("load", chunk.end - chunk.start)  # the child's own events do not reach this process
    else:
        result = loader.load_chunk(db, storage, job_id, uri, chunk, block_size=block_size,
                                   max_line_bytes=max_line_bytes)
    get_run_logger().info("chunk %d: %s %d rows, %d rejects in %.1fs", chunk.index,
                          "skipped (already committed)," if result.skipped else "loaded", result.rows_loaded,
                          result.rows_rejected, result.duration_s)
    return result


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def finalize_job(db: Database, job_id: int) -> jobs.JobSummary:
    """Sum committed chunks into the job and set its final status."""
    return jobs.finalize_job(db.engine, job_id)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_job(db: Database, job_id: int) -> jobs.JobSummary:
    """Read a job's stored summary."""
    return jobs.get_job(db.engine, job_id)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def fail_job(db: Database, job_id: int, error: str) -> None:
    """Mark a pre-registered job failed when its run cannot start loading."""
    jobs.fail_job(db.engine, job_id, error)


@task(cache_policy=NO_CACHE)
def publish_report(summary: jobs.JobSummary, chunks: list[dict[str, Any]] | None = None) -> None:
    """Publish the run's summary (markdown) and its rejects by reason (table) as artifacts."""
    key = f"clientes-job-{summary.job_id}"
    create_markdown_artifact(markdown=report.summary_markdown(summary, chunks), key=key,
                             description=f"Ingest job {summary.job_id}: {summary.status}")
    create_table_artifact(table=report.rejects_table(summary), key=f"{key}-rejects",
                          description=f"Rejects by reason, job {summary.job_id}")


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_chunks(db: Database, job_id: int) -> list[dict[str, Any]]:
    """Per-chunk measurements of a job (for the report)."""
    return jobs.job_chunks(db.engine, job_id)
