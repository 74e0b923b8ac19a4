"""The ``clientes-snapshot-ready`` flow: the downstream hook that runs after every completed ingest job.

prefect.yaml's ``clientes-snapshot-ready/local`` and ``/k8s`` deployments carry a trigger on the event
``clientes.job.completed``: Prefect starts a run of this flow with the job's id for each completed job,
so consumers chain on a finished load instead of polling. It checks that ``clientes_vigentes`` now shows
that job and publishes a markdown artifact; copy this deployment (or add a trigger like it to your own)
to refresh a downstream table, send a file, or start another deployment (docs/operations.md).
Orchestration only. Requires: the settings of ``clientes_ingest.settings`` (env ``CLIENTES_*``).
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from clientes_ingest.recovery_tasks import load_database
from clientes_ingest.settings import load_settings
from clientes_ingest.tasks import read_job, read_snapshot


@flow(name="clientes-snapshot-ready", log_prints=True)
def clientes_snapshot_ready(job_id: int) -> dict[str, Any]:
    """Report the client snapshot ``job_id`` made current (or that a later job already replaced it)."""
    db = load_database(load_settings())
    job = read_job(db, job_id)
    snapshot = read_snapshot(db)
    current = snapshot["job_id"] == job_id
    get_run_logger().info("job %d (%s) completed; clientes_vigentes shows job %s with %d rows%s", job_id,
                          job.file_name, snapshot["job_id"], snapshot["rows"],
                          "" if current else ": a later job is already current")
    create_markdown_artifact(
        key="clientes-snapshot", description=f"clientes_vigentes after job {job_id}",
        markdown=f"# clientes_vigentes\n\nJob {job_id} ({job.file_name}, {job.status}) completed with "
                 f"{job.rows_loaded:,} rows. The view shows job {snapshot['job_id']} ({snapshot['rows']:,} rows)"
                 f"{'' if current else ': a later job is already current'}.\n")
    return {"job_id": job_id, "current": current, **{f"view_{k}": v for k, v in snapshot.items()}}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m flows.snapshot JOB_ID")
    print(clientes_snapshot_ready(int(sys.argv[1])))
