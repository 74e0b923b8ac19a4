"""Prefect tasks of the ``recover-abandoned-jobs`` flow: open the database, find abandoned jobs, start a
run of the ingest deployment for one, publish what was done. Kept apart from ``tasks`` (the ingest
flow's tasks) so that module stays small; the retry policy follows the same rules (``tasks.backoff``).
Requires: prefect 3; for ``start_ingest_run`` the named deployment applied (prefect.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from clientes_ingest import recovery, resources
from clientes_ingest.db import Database
from clientes_ingest.flow_results import RecoveryResult
from clientes_ingest.settings import Settings
from clientes_ingest.tasks import backoff

REPORT_KEY = "recovered-jobs"
# Runs started per takeover: a run that ended (crashed, cancelled, failed) without taking the job over is
# replaced by the next recovery, this many times in all; then the recovery reports the job as failed.
MAX_STARTS = 3


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def load_database(settings: Settings) -> Database:
    """The database handle (``resources``: from the named block when ``CLIENTES_DB_BLOCK`` is set)."""
    return resources.open_database(settings)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def find_abandoned_jobs(db: Database, lease_seconds: float, limit: int) -> list[recovery.AbandonedJob]:
    """Running jobs whose heartbeat is older than the lease and old pending jobs, longest idle first."""
    found = recovery.abandoned_jobs(db.engine, lease_seconds, limit=limit)
    get_run_logger().info("%d abandoned job(s) (lease %.0fs, limit %d)%s", len(found), lease_seconds, limit,
                          ": " + ", ".join(str(j.job_id) for j in found) if found else "")
    return found


@dataclass(frozen=True)
class StartedRun:
    """What ``start_ingest_run`` did: the run (new or earlier), and whether the takeover ran out of starts."""

    flow_run_id: str
    created: bool
    state: str | None
    exhausted: bool = False


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def start_ingest_run(deployment: str, job: recovery.AbandonedJob) -> StartedRun:
    """Create a run of ``deployment`` resuming ``job``, once per takeover (its idempotency key).

    A run of an earlier recovery that has not ended is reported instead (``created`` False). One that
    ended without taking the job over (the job would have a new takeover key otherwise) is replaced,
    under the next key of the takeover, up to ``MAX_STARTS`` runs; after that ``exhausted`` is True and
    nothing is started. Two recoveries racing here pick the same key, so Prefect creates one run.
    The launcher is the one of the API and the trigger (``resources.deployment_launcher``).
    """
    launcher = resources.deployment_launcher(deployment, tags=("recovery",))
    keys = [f"{deployment}:{job.takeover_key}:start-{n}" for n in range(1, MAX_STARTS + 1)]
    earlier = launcher.find_all(keys)
    logger = get_run_logger()
    live = [r for r in earlier if not r.ended]
    if live or len(earlier) >= MAX_STARTS:
        run = live[0] if live else earlier[-1]
        logger.info("job %d: run %s of %s %s (%s)", job.job_id, run.flow_run_id, deployment,
                    "already started" if live else f"is the last of {MAX_STARTS} that ended", run.state)
        return StartedRun(run.flow_run_id, False, run.state, exhausted=not live)
    new = launcher.launch(job.source_uri, job_id=job.job_id, idempotency_key=keys[len(earlier)])
    logger.info("job %d: started run %s of %s (%s)%s", job.job_id, new.flow_run_id, deployment, new.state,
                f", replacing {len(earlier)} that ended without taking the job over" if earlier else "")
    return StartedRun(new.flow_run_id, new.created, new.state)


@task(cache_policy=NO_CACHE)
def publish_recovery_report(results: list[RecoveryResult], lease_seconds: float) -> None:
    """A table artifact: every abandoned job found and what this run did with it."""
    columns = ("job_id", "status", "file_name", "idle_seconds", "chunks_done", "chunk_count", "action",
               "flow_run_id", "error")
    table = [{c: ("" if (value := getattr(r, c)) is None else value) for c in columns} for r in results]
    create_table_artifact(table=table or [{c: "" for c in columns}], key=REPORT_KEY,
                          description=f"Abandoned jobs (lease {lease_seconds:.0f}s): {len(results)} found")
