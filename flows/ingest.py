"""The ``ingest-clientes`` flow: stage a CLIENTES file, register its job, load its chunks, finalize.

Orchestration only: every IO step is a task in ``clientes_ingest.tasks``. Deployed by prefect.yaml as
``ingest-clientes/k8s`` and ``ingest-clientes/local``; run directly with
``python -m flows.ingest SOURCE`` or ``clientes-ingest run SOURCE``.
Requires: the settings of ``clientes_ingest.settings`` (env ``CLIENTES_*``, read once when a run starts);
blocks when ``CLIENTES_DB_BLOCK`` / ``CLIENTES_S3_BLOCK`` name them.

Task runner: callers in this process choose it at call time
(``ingest_clientes.with_options(task_runner=build_task_runner(settings))``). A run started from a
deployment (prefect.yaml's entrypoint; a worker imports this module and calls the flow as declared) gets
``RunnerFromSettings``: Prefect asks a flow's runner for a fresh copy when each run starts, and this one
answers with ``build_task_runner(load_settings())`` at that moment, so the pod's
``CLIENTES_CHUNK_CONCURRENCY`` / ``CLIENTES_DASK_ADDRESS`` apply to that run. Nothing is read at import.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect import Task, flow, get_run_logger, runtime, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from clientes_ingest.flow_results import IngestResult
from clientes_ingest.jobs import REJECTED_FILE, Registration
from clientes_ingest.settings import Settings, load_settings, reject_policy
from clientes_ingest.sources import SourcePolicy
from clientes_ingest.staging import resolve_source
from clientes_ingest.statuses import Action, JobStatus
from clientes_ingest.storage import ObjectVersion
from clientes_ingest.tasks import (
    ChunkLoad,
    discard_staged_copy,
    emit_job_events,
    fail_job,
    finalize_job,
    load_resources,
    process_chunk,
    publish_report,
    read_chunks,
    read_job,
    read_job_source,
    read_reject_history,
    register_job,
    stage_file,
)


class IngestFailed(RuntimeError):
    """Raised at the end of a run whose job could not load every chunk, or whose file was refused as
    ``rejected_file`` (the flow run fails)."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message, job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return str(self.args[0])


def build_task_runner(settings: Settings | None = None) -> TaskRunner[Any]:
    """A thread pool of ``chunk_concurrency`` threads; Dask when ``dask_address`` names a scheduler (or ``local``)."""
    settings = settings or load_settings()
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner

        if settings.dask_address == "local":
            return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
        return DaskTaskRunner(address=settings.dask_address)
    return ThreadPoolTaskRunner(max_workers=settings.chunk_concurrency)


class RunnerFromSettings(TaskRunner[PrefectFuture[Any]]):
    """The declared runner of ``ingest_clientes``: a placeholder that Prefect replaces, when a run starts, by
    its ``duplicate()``, the runner the settings of that moment ask for (``build_task_runner``)."""

    @property
    def name(self) -> str:
        return "runner-from-settings"

    def duplicate(self) -> Any:
        return build_task_runner()

    def submit(self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[PrefectFuture[Any]]
               | None = None, dependencies: dict[str, set[Any]] | None = None) -> PrefectFuture[Any]:
        raise RuntimeError("RunnerFromSettings only stands for the runner built when a run starts")


@flow(name="ingest-clientes", task_runner=RunnerFromSettings(), log_prints=True)
def ingest_clientes(
    source: str, force: bool = False, job_id: int | None = None, chunk_size: str | None = None,
    sha256: str | None = None, version_id: str | None = None, etag: str | None = None,
) -> IngestResult:
    """Load a CLIENTES file exactly once: valid rows into ``clientes``, corrupt lines into ``ingest_rejects``.

    ``source``: a local path, ``file://`` or ``s3://bucket/key``; ``{MMYY}``-style placeholders are
    filled from the run's scheduled time. ``force``: load again content already loaded. ``job_id``: a
    pre-registered job, or an unfinished job to resume. ``chunk_size``: e.g. ``"32MB"``.
    ``sha256``, ``version_id``, ``etag``: the content and object version the run was started for (set by
    the API and the trigger); only those bytes are loaded, else the run fails and loads nothing.
    Returns the job as it ends and what this run did with the file (``IngestResult``).
    """
    logger = get_run_logger()
    settings = load_settings(chunk_size=chunk_size)
    policy = reject_policy(settings)
    source = resolve_source(source, runtime.flow_run.scheduled_start_time)
    db, storage = load_resources(settings, source)
    try:
        job = read_job_source(db, job_id) if job_id is not None else None
        staged = stage_file(source, storage, settings.chunk_size, SourcePolicy.from_settings(settings), job,
                            ObjectVersion.of(version_id, etag), sha256)
    except Exception as exc:
        if job_id is not None:
            fail_job(db, job_id, str(exc))
            emit_job_events(read_job(db, job_id))
        raise
    registration = register_job(db, staged, force, job_id, str(runtime.flow_run.id or "") or None,
                                settings.job_lease_seconds)
    if registration.uri != staged.uri:  # the job reads another object: the copy this run stored is unused
        discard_staged_copy(db, storage, source, staged, registration, return_state=True)  # a failure is logged
    if registration.action == Action.REJECTED:
        summary = read_job(db, registration.job_id)
        raise IngestFailed(f"job {summary.job_id} refused this content ({summary.error}); to load it anyway: "
                           f"--force with a higher CLIENTES_MAX_REJECT_RATIO", summary.job_id)
    if registration.action.nothing_to_do:
        logger.info("%s: job %d %s; nothing to load", staged.name, registration.job_id,
                    "already loaded this content" if registration.action == Action.ALREADY_LOADED
                    else "is loading this content in another run")
        return IngestResult.of(read_job(db, registration.job_id), registration.action)

    _load_pending_chunks(registration, ChunkLoad.of(db, storage, registration.job_id, registration.uri, settings))
    summary = finalize_job(db, registration.job_id, policy)
    trends = publish_report(summary, read_chunks(db, registration.job_id),
                            read_reject_history(db, registration.job_id))
    emit_job_events(summary, trends)
    if summary.status == REJECTED_FILE:
        raise IngestFailed(f"job {summary.job_id} {summary.error}", summary.job_id)
    if summary.status == JobStatus.FAILED:
        raise IngestFailed(f"job {summary.job_id} failed: {summary.error}; rerun the same source to load "
                           f"the missing chunks", summary.job_id)
    logger.info("job %d %s: %d rows, %d rejects", summary.job_id, summary.status, summary.rows_loaded,
                summary.rows_rejected)
    return IngestResult.of(summary, registration.action)


def _load_pending_chunks(registration: Registration, load: ChunkLoad) -> None:
    """Load the job's pending chunks on the flow's task runner, advancing a progress artifact as each ends.

    A chunk that fails after its retries is logged and left to ``finalize_job``, which fails the job.
    """
    logger = get_run_logger()
    total = registration.chunk_count
    done = total - len(registration.pending)
    logger.info("job %d: %s, %d of %d chunks to load", registration.job_id, registration.action,
                len(registration.pending), total)
    progress_id = create_progress_artifact(progress=100.0 * done / total if total else 100.0,
                                           description=f"Chunks processed, job {registration.job_id}")
    assert isinstance(progress_id, UUID)  # the sync call inside a sync flow returns the id itself
    futures = process_chunk.map(unmapped(load), list(registration.pending))
    for future in as_completed(futures):
        try:
            future.result()
        except Exception as exc:  # recorded on the chunk; the job is finalized as failed
            logger.error("a chunk failed after its retries: %s", exc)
        done += 1
        update_progress_artifact(progress_id, 100.0 * done / total)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m flows.ingest SOURCE")
    print(ingest_clientes(sys.argv[1]).model_dump_json(indent=2))
