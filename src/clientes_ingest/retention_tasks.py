"""Prefect tasks of the ``purge-old-jobs`` flow: open the database and the storages, find the jobs to
purge, purge (or preview) one job, publish what was removed. The work itself is ``retention``; retry
policies follow ``tasks.backoff``. Requires: prefect 3; blocks when ``CLIENTES_DB_BLOCK`` /
``CLIENTES_S3_BLOCK`` name them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from clientes_ingest import retention
from clientes_ingest.db import Database
from clientes_ingest.flow_results import PurgeResult
from clientes_ingest.resources import open_database, open_storage
from clientes_ingest.settings import Settings
from clientes_ingest.storage import Storage
from clientes_ingest.tasks import backoff

REPORT_KEY = "purged-jobs"


class StorageFinder:
    """The storage that holds a stored URI, built by the composition root (``resources.open_storage``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, uri: str) -> Storage | None:
        return open_storage(self.settings, uri)


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def load_purge_resources(settings: Settings) -> tuple[Database, StorageFinder]:
    """The database (from the named block when set) and the storages the purged files live in."""
    return open_database(settings), StorageFinder(settings)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def find_purgeable_jobs(db: Database, cutoff: dt.datetime, keep_rows: bool, limit: int) -> list[dict[str, Any]]:
    """Jobs finished before ``cutoff`` with something left to purge, oldest first."""
    found = retention.find_purgeable(db.engine, cutoff, keep_rows=keep_rows, limit=limit)
    get_run_logger().info("%d job(s) finished before %s to purge%s", len(found), f"{cutoff:%Y-%m-%d %H:%M}",
                          ": " + ", ".join(str(j["id"]) for j in found) if found else "")
    return found


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def purge_job(db: Database, storages: StorageFinder, job: dict[str, Any], cutoff: dt.datetime, keep_rows: bool,
              batch_lines: int) -> retention.PurgedJob | None:
    """Purge one job; a retry completes what a failed attempt began (every step is idempotent).

    None: a run took the job over since it was found (it is left alone).
    """
    return retention.purge_job(db.engine, job, storages, cutoff, keep_rows=keep_rows, batch_lines=batch_lines)


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def preview_job(db: Database, storages: StorageFinder, job: dict[str, Any], keep_rows: bool) -> retention.PurgedJob:
    """What purging one job would remove (a dry run changes nothing)."""
    return retention.preview_job(db.engine, job, storages, keep_rows=keep_rows)


@task(cache_policy=NO_CACHE)
def publish_purge_report(results: list[PurgeResult], older_than: str, dry_run: bool) -> None:
    """A table artifact: every job purged (or that a dry run would purge) and what went."""
    columns = ("job_id", "file_name", "status", "finished_at", "object", "rejects_deleted", "rows_deleted",
               "claim_released", "error")
    table = [{c: _cell(getattr(r, c)) for c in columns} for r in results]
    verb = "would purge" if dry_run else "purged"
    create_table_artifact(table=table or [{c: "" for c in columns}], key=REPORT_KEY,
                          description=f"Jobs finished more than {older_than} ago: {verb} {len(results)}")


def _cell(value: Any) -> Any:
    """A cell of the report: blank for None, a time as ``YYYY-MM-DD HH:MM:SS``."""
    if value is None:
        return ""
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value
