"""Prefect tasks of the ``recover-abandoned-jobs`` flow: open the database, find abandoned jobs, start a
run of the ingest deployment for one, publish what was done. Kept apart from ``tasks`` (the ingest
flow's tasks) so that module stays small; the retry policy follows the same rules (``tasks.backoff``).
Requires: prefect 3; for ``start_ingest_run`` the named deployment applied (prefect.yaml).
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from clientes_ingest import recovery
from clientes_ingest.db import Database
from clientes_ingest.settings import Settings
from clientes_ingest.tasks import backoff

REPORT_KEY = "recovered-jobs"


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def load_database(settings: Settings) -> Database:
    """The database handle, from the named block when ``CLIENTES_DB_BLOCK`` is set (as the ingest flow)."""
    if settings.db_block:
        from blocks.definitions import load_database_url

        return Database(load_database_url(settings.db_block))
    return Database(settings.db_url)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def find_abandoned_jobs(db: Database, lease_seconds: float, limit: int) -> list[recovery.AbandonedJob]:
    """Running jobs whose heartbeat is older than the lease and old pending jobs, longest idle first."""
    found = recovery.abandoned_jobs(db.engine, lease_seconds, limit=limit)
    get_run_logger().info("%d abandoned job(s) (lease %.0fs, limit %d)%s", len(found), lease_seconds, limit,
                          ": " + ", ".join(str(j.job_id) for j in found) if found else "")
    return found


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def start_ingest_run(deployment: str, job: recovery.AbandonedJob) -> dict[str, Any]:
    """Create a run of ``deployment`` resuming ``job``, once per takeover (its idempotency key).

    Returns the flow run's id and state, and whether this call created it (False: an earlier recovery
    already did, e.g. a concurrent one; the lookup before the call only informs that report, the
    idempotency key is what prevents the second run).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    key = f"{deployment}:{job.takeover_key}"
    with get_client(sync_client=True) as client:
        earlier = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])), limit=1)
    run = run_deployment(deployment, parameters={"source": job.source_uri, "job_id": job.job_id}, timeout=0,
                         idempotency_key=key, tags=["clientes-ingest", "recovery"])
    assert isinstance(run, FlowRun)  # the sync call in a sync task returns the run itself
    state = run.state.name if run.state else None
    get_run_logger().info("job %d: %s run %s of %s (%s)", job.job_id, "found the earlier" if earlier else "started",
                          run.id, deployment, state)
    return {"flow_run_id": str(run.id), "created": not earlier, "state": state}


@task(cache_policy=NO_CACHE)
def publish_recovery_report(results: list[dict[str, Any]], lease_seconds: float) -> None:
    """A table artifact: every abandoned job found and what this run did with it."""
    columns = ("job_id", "status", "file_name", "idle_seconds", "chunks_done", "chunk_count", "action",
               "flow_run_id", "error")
    table = [{c: ("" if r.get(c) is None else r[c]) for c in columns} for r in results]
    create_table_artifact(table=table or [{c: "" for c in columns}], key=REPORT_KEY,
                          description=f"Abandoned jobs (lease {lease_seconds:.0f}s): {len(results)} found")
