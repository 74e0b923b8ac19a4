"""The ``purge-old-jobs`` flow: retention. Jobs finished longer ago than ``older_than`` (default
``CLIENTES_RETENTION``, 30 days) lose their stored file, their rejects and, unless ``keep_rows``, their
``clientes`` rows; ``running`` and ``pending`` jobs and the newest completed job are never touched
(docs/retention.md). Orchestration only: every IO step is a task. Deployed by prefect.yaml as
``purge-old-jobs/k8s`` (weekly) and ``purge-old-jobs/local``; run with ``clientes-ingest purge``.
Requires: the settings of ``clientes_ingest.settings`` (env ``CLIENTES_*``).
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger

from clientes_ingest.failures import SomeJobsFailed
from clientes_ingest.flow_results import PurgeResult
from clientes_ingest.retention import DEFAULT_BATCH_LINES, cutoff_for
from clientes_ingest.retention_tasks import (
    find_purgeable_jobs,
    load_purge_resources,
    preview_job,
    publish_purge_report,
    purge_job,
)
from clientes_ingest.settings import load_settings


class PurgeFailed(SomeJobsFailed[PurgeResult]):
    """Raised at the end of a purge in which some job could not be purged; ``results`` has them all."""


@flow(name="purge-old-jobs", log_prints=True)
def purge_old_jobs(
    older_than: str | None = None, keep_rows: bool = False, dry_run: bool = False, limit: int = 1000,
    batch_lines: int = DEFAULT_BATCH_LINES,
) -> list[PurgeResult]:
    """Purge up to ``limit`` jobs finished more than ``older_than`` (e.g. ``"30d"``) ago, oldest first.

    ``keep_rows``: keep their ``clientes`` rows (and so their content claim). ``dry_run``: only report
    what would be removed. ``batch_lines``: line numbers per delete transaction. One ``PurgeResult`` per job.
    """
    logger = get_run_logger()
    settings = load_settings()
    age = older_than or settings.retention
    cutoff = cutoff_for(age)
    db, storages = load_purge_resources(settings)
    results: list[PurgeResult] = []
    for job in find_purgeable_jobs(db, cutoff, keep_rows, limit):
        try:
            purged = preview_job(db, storages, job, keep_rows) if dry_run else \
                purge_job(db, storages, job, cutoff, keep_rows, batch_lines)
        except Exception as exc:  # one job's failure must not keep the others from being purged
            logger.error("job %d could not be purged: %s", job["id"], exc)
            results.append(PurgeResult.failed(job, str(exc)[:500]))
            continue
        if purged is None:
            logger.info("job %d was taken over by a run since it was found; left alone", job["id"])
            continue
        result = PurgeResult.of(purged)
        logger.info("job %d (%s): stored file %s, %d rejects, %d rows%s", result.job_id, result.status,
                    result.object, result.rejects_deleted, result.rows_deleted, " (dry run)" if dry_run else "")
        results.append(result)
    publish_purge_report(results, age, dry_run)
    PurgeFailed.check(results, [r.job_id for r in results if r.error], "job(s) could not be purged",
                      then="; the next purge completes them")
    return results


if __name__ == "__main__":
    for purged in purge_old_jobs(older_than=sys.argv[1] if len(sys.argv) > 1 else None):
        print(purged.model_dump_json())
