"""The ``recover-abandoned-jobs`` flow: find jobs whose run died or never started, and resume them.

A job ``running`` with a heartbeat older than the lease, or ``pending`` for longer than the lease, is
resumed by an ingest run with its ``job_id``: the lease lets exactly one run take it over, and that run
loads only the chunks not committed yet (docs/reliability.md). With ``deployment`` (e.g.
``ingest-clientes/k8s``) each job gets a flow run of that deployment, created once per takeover (an
idempotency key); without it each job is resumed here, one after another, as a subflow.
Orchestration only: every IO step is a task. Deployed by prefect.yaml as ``recover-abandoned-jobs/k8s``
(every 30 minutes) and ``recover-abandoned-jobs/local``; run with ``clientes-ingest recover``.
Requires: the settings of ``clientes_ingest.settings`` (env ``CLIENTES_*``).
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger

from clientes_ingest.failures import SomeJobsFailed
from clientes_ingest.flow_results import RecoveryResult
from clientes_ingest.recovery import AbandonedJob
from clientes_ingest.recovery_tasks import (
    MAX_STARTS,
    find_abandoned_jobs,
    load_database,
    publish_recovery_report,
    start_ingest_run,
)
from clientes_ingest.settings import load_settings
from clientes_ingest.statuses import Action, RecoveryAction
from flows.ingest import ingest_clientes

# What a resumed ingest run reports (its action), as this flow records it; an ingest run that refuses its
# file (Action.REJECTED) raises instead of returning.
OUTCOMES = {Action.LOAD: RecoveryAction.RESUMED, Action.RESUME: RecoveryAction.RESUMED,
            Action.IN_PROGRESS: RecoveryAction.HELD, Action.ALREADY_LOADED: RecoveryAction.ALREADY_LOADED}


class RecoveryFailed(SomeJobsFailed[RecoveryResult]):
    """Raised at the end of a recovery in which some job could not be resumed; ``results`` has them all."""


@flow(name="recover-abandoned-jobs", log_prints=True)
def recover_abandoned_jobs(
    lease_seconds: float | None = None, limit: int = 10, deployment: str | None = None
) -> list[RecoveryResult]:
    """Resume up to ``limit`` abandoned jobs, the longest idle first; one ``RecoveryResult`` per job found.

    ``lease_seconds``: how long without a heartbeat makes a job abandoned (default: the setting
    ``CLIENTES_JOB_LEASE_SECONDS``; the run that resumes a job takes it over only past its own lease).
    ``deployment``: start runs of this deployment instead of resuming jobs in this process.
    """
    logger = get_run_logger()
    settings = load_settings()
    lease = settings.job_lease_seconds if lease_seconds is None else lease_seconds
    db = load_database(settings)
    results: list[RecoveryResult] = []
    for job in find_abandoned_jobs(db, lease, limit):
        result = _start_run(deployment, job) if deployment else _resume_here(job)
        logger.info("job %d (%s, idle %.0fs, %d/%d chunks done): %s", job.job_id, job.status, job.idle_seconds,
                    job.chunks_done, job.chunk_count, result.action)
        results.append(result)
    publish_recovery_report(results, lease)
    RecoveryFailed.check(results, [r.job_id for r in results if r.action == RecoveryAction.FAILED],
                         "abandoned job(s) could not be resumed")
    return results


def _start_run(deployment: str, job: AbandonedJob) -> RecoveryResult:
    """Start a run of ``deployment`` for the job, once per takeover; fail after ``MAX_STARTS`` ended runs."""
    started = start_ingest_run(deployment, job)
    if started.exhausted:
        error = f"{MAX_STARTS} runs of {deployment} ended without taking the job over; the last: "
        return RecoveryResult.of(job, RecoveryAction.FAILED, flow_run_id=started.flow_run_id,
                                 run_state=started.state, error=error + started.flow_run_id)
    return RecoveryResult.of(job, RecoveryAction.STARTED if started.created else RecoveryAction.ALREADY_STARTED,
                             flow_run_id=started.flow_run_id, run_state=started.state)


def _resume_here(job: AbandonedJob) -> RecoveryResult:
    """Resume the job with an ingest run in this process (a subflow)."""
    try:
        outcome = ingest_clientes(source=job.source_uri, job_id=job.job_id)
    except Exception as exc:  # one job's failure must not keep the others from being resumed
        get_run_logger().error("job %d could not be resumed: %s", job.job_id, exc)
        return RecoveryResult.of(job, RecoveryAction.FAILED, error=str(exc)[:500])
    return RecoveryResult.of(job, OUTCOMES[outcome.action], job_status=outcome.status)


if __name__ == "__main__":
    for recovered in recover_abandoned_jobs(deployment=sys.argv[1] if len(sys.argv) > 1 else None):
        print(recovered.model_dump_json())
