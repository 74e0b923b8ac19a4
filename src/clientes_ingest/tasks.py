"""Prefect tasks: one IO step each, with its retry policy declared next to it.

The work itself lives in plain modules (staging, jobs, loader) tested without Prefect; these wrappers
add retries, names and logging. Dependencies arrive as arguments (a ``Database``, a ``Storage``):
both are small picklable handles, so the same tasks run on the thread pool, Dask or Kubernetes.
Retry delays grow from ``CLIENTES_RETRY_BACKOFF_SECONDS`` (default 2 s: 2, 8, 32 s, with jitter; the one
setting read at import, since Prefect fixes a task's retry delays when it is declared).
``process_chunk`` holds one slot of the Prefect global concurrency limit named by
``CLIENTES_DB_WRITE_LIMIT`` (default ``clientes-db-writers``; passed in its ``ChunkLoad``) while its chunk
loads, so at most that many chunks write to the database at once across every run (docs/concurrency.md).
Requires: prefect 3; the limit itself is optional (``clientes-ingest blocks register`` creates it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.context import TaskRunContext
from prefect.events import emit_event

from clientes_ingest import (
    job_events,
    job_queries,
    jobs,
    lease,
    progress,
    quality,
    report,
    resources,
    retention,
    staging,
)
from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import Database
from clientes_ingest.guard import RejectPolicy
from clientes_ingest.settings import RetryConfig, Settings, reject_policy
from clientes_ingest.sources import SourcePolicy
from clientes_ingest.storage import ObjectVersion, Storage, StorageError, VersionMismatch

if TYPE_CHECKING:  # loader imports pyarrow: the flow-run process imports it only to load in-process
    from clientes_ingest import loader

CHUNK_RETRIES = 3
LEASE_BEATS = 3  # heartbeats per lease while a chunk task waits or loads
SLOW_SLOT_WAIT_SECONDS = 1.0  # a chunk that waited longer than this for its write slot says so (info)
MISSING_LIMIT_RECHECK_SECONDS = 60.0  # a missing limit is asked for again after this long (one call, not one a chunk)
_missing_limits: dict[str, float] = {}  # limit name -> when this process found it missing (monotonic)
_missing_lock = threading.Lock()


class DbWriteSlotError(RuntimeError):
    """The Prefect API refused (or could not be asked for) a slot of the database-writers limit."""


def backoff(retries: int) -> list[float]:
    """Delays before each retry: base, 4x base, 16x base (base ``CLIENTES_RETRY_BACKOFF_SECONDS``, 2 s)."""
    base = RetryConfig().backoff_seconds
    return [base * 4**attempt for attempt in range(retries)]


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def load_resources(settings: Settings, source: str) -> tuple[Database, Storage]:
    """Build the database and storage handles once per run (``resources``: from named blocks when set)."""
    return resources.open_resources(settings, source)


def retry_unless_wrong_bytes(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry a staging failure unless it found the wrong content or version: no retry brings those bytes back."""
    return not isinstance(getattr(state, "data", None), staging.ContentMismatch | VersionMismatch)


@task(retries=2, retry_delay_seconds=backoff(2), retry_condition_fn=retry_unless_wrong_bytes, cache_policy=NO_CACHE)
def stage_file(
    source: str, storage: Storage, chunk_size: int, policy: SourcePolicy, job: jobs.JobSource | None = None,
    version: ObjectVersion | None = None, sha256: str | None = None,
) -> jobs.StagedFile:
    """Check the source against the allow-lists, pin the version the run is for, then store or scan it once
    (size, sha256, chunk plan), or take the plan its job recorded when the upload was stored (no second read)."""
    policy.check(source)  # before the storage is asked anything about it
    staged = staging.stage_for_job(source, storage, chunk_size, job=job, version=version, sha256=sha256)
    reused = job is not None and staged is job.staged
    get_run_logger().info("%s %s: %d bytes, %d lines, %d chunks, sha256 %s", "planned at upload" if reused
                          else "staged", staged.uri, staged.size, staged.total_lines, len(staged.chunks),
                          staged.sha256[:12])
    return staged


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_job_source(db: Database, job_id: int) -> jobs.JobSource | None:
    """What a registered job pins: object version, sha256 and, for a planned upload, its chunk plan."""
    return jobs.job_source(db.engine, job_id)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def register_job(
    db: Database, staged: jobs.StagedFile, force: bool, job_id: int | None, flow_run_id: str | None,
    lease_seconds: float,
) -> jobs.Registration:
    """Create the schema if missing, then register (or find) the job and its chunks.

    This process is recorded as the job's owner; a job held by a provably dead run (``holder_is_dead``)
    is taken over at once.
    """
    db.ensure_schema()
    return jobs.register_job(db.engine, staged, force=force, job_id=job_id, flow_run_id=flow_run_id,
                             lease_seconds=lease_seconds, owner=lease.this_process(), holder_is_dead=holder_is_dead)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def discard_staged_copy(
    db: Database, storage: Storage, source: str, staged: jobs.StagedFile, registration: jobs.Registration,
) -> str:
    """Delete the copy of ``source`` this run stored when the job it found reads another object (content
    already loaded, refused, or loading in another run): no job names that copy, so retention never would.

    Never the caller's own object, nor one a job row names, nor a copy in content-addressed (local) storage
    (``retention.discard_unregistered_copy``). Returns what happened to the copy.
    """
    try:
        outcome = retention.discard_unregistered_copy(db.engine, storage, source, staged.uri, registration.uri)
    except StorageError as exc:
        raise StorageError(f"{exc}; no job names this copy, so retention will not delete it either: "
                           f"delete it by hand") from exc
    if outcome == "deleted":
        get_run_logger().info("deleted this run's copy %s: job %d reads %s", staged.uri, registration.job_id,
                              registration.uri)
    return outcome


def holder_is_dead(holder: lease.Holder) -> bool:
    """Whether the run holding a job is provably gone: its process on this host is (``lease``), or its
    Prefect flow run is in a final state (completed, failed, cancelled, crashed). Unknown counts as alive."""
    if lease.process_is_dead(holder.host, holder.pid, holder.started):
        return True
    return flow_run_ended(holder.flow_run_id)


def flow_run_ended(flow_run_id: str | None) -> bool:
    """True if the Prefect API knows this flow run and its state is final; False if not, or unreachable."""
    if not flow_run_id:
        return False
    from uuid import UUID

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except Exception as exc:  # not found (another API), API down: nothing is proved
        logging.getLogger(__name__).debug("flow run %s: state unknown (%s)", flow_run_id, exc)
        return False
    return state is not None and state.is_final()


@contextmanager
def db_write_slot(limit: str, chunk_index: int) -> Iterator[None]:
    """Hold one slot of the global concurrency limit ``limit`` for the block's duration.

    No deadline: a chunk waits as long as the slots are held (a holder that dies loses its lease after
    5 minutes). An empty name holds nothing; a name with no limit behind it holds nothing either and
    logs a warning once per process, so a missing limit neither stalls nor fails a load (it is asked
    for again after ``MISSING_LIMIT_RECHECK_SECONDS``). An API that refuses the slot (e.g. a limit of 0)
    or cannot be reached raises ``DbWriteSlotError``.
    """
    if not limit or _recently_missing(limit):
        yield
        return
    logger = get_run_logger()
    slot = ExitStack()
    started = time.monotonic()
    try:
        # strict=True makes a missing limit an error we can tell apart (and report once) instead of
        # Prefect's warning on every chunk; a lease renewal hiccup must not abort a half-written chunk.
        slot.enter_context(concurrency(limit, occupy=1, timeout_seconds=None, strict=True,
                                       raise_on_lease_renewal_failure=False, holder=_lease_holder()))
    except ConcurrencySlotAcquisitionError as exc:
        if exc.__cause__ is not None:  # an HTTP or connection error, not a missing limit
            raise DbWriteSlotError(
                f"cannot take a slot of the global concurrency limit {limit!r}: {exc} ({exc.__cause__}); "
                f"check it with `prefect gcl inspect {limit}` (a limit of 0 refuses every chunk) or set "
                f"CLIENTES_DB_WRITE_LIMIT= to load without it") from exc
        _report_missing(logger, limit)
    else:
        with _missing_lock:
            _missing_limits.pop(limit, None)  # it exists now: should it vanish again, say so again
        waited = time.monotonic() - started
        if waited > SLOW_SLOT_WAIT_SECONDS:
            logger.info("chunk %d waited %.1fs for a slot of the global concurrency limit %r", chunk_index,
                        waited, limit)
    with slot:
        yield


def _lease_holder() -> ConcurrencyLeaseHolder | None:
    """The task run holding the slot, so the UI and API can show who holds it."""
    context = TaskRunContext.get()
    return ConcurrencyLeaseHolder(type="task_run", id=context.task_run.id) if context else None


def _recently_missing(limit: str) -> bool:
    with _missing_lock:
        found_missing = _missing_limits.get(limit)
    return found_missing is not None and time.monotonic() - found_missing < MISSING_LIMIT_RECHECK_SECONDS


def _report_missing(logger: logging.Logger | logging.LoggerAdapter[logging.Logger], limit: str) -> None:
    with _missing_lock:
        reported = limit in _missing_limits
        _missing_limits[limit] = time.monotonic()
    if reported:
        return
    logger.warning("global concurrency limit %r does not exist: chunks write to the database without a limit; "
                   "create it with `clientes-ingest blocks register` (or `prefect gcl create %s --limit 2`), "
                   "or set CLIENTES_DB_WRITE_LIMIT= to turn this off", limit, limit)


@dataclass(frozen=True)
class ChunkLoad:
    """What every chunk of one job shares: handles, the stored file, and the load options from settings.

    Built once by the flow and passed to each ``process_chunk`` (picklable, for Dask and subprocesses),
    so a chunk task never reads settings itself.
    """

    db: Database
    storage: Storage
    job_id: int
    uri: str
    block_size: int
    max_line_bytes: int
    isolation: str = "thread"
    db_write_limit: str = ""
    lease_seconds: float = 900.0
    policy: RejectPolicy | None = None  # the reject guard (CLIENTES_MAX_REJECT_RATIO, CLIENTES_MAX_STORED_REJECTS)

    @classmethod
    def of(cls, db: Database, storage: Storage, job_id: int, uri: str, settings: Settings) -> ChunkLoad:
        return cls(db, storage, job_id, uri, block_size=settings.block_size, max_line_bytes=settings.max_line_bytes,
                   isolation=settings.chunk_isolation, db_write_limit=settings.db_write_limit,
                   lease_seconds=settings.job_lease_seconds, policy=reject_policy(settings))


@task(retries=CHUNK_RETRIES, retry_delay_seconds=backoff(CHUNK_RETRIES), retry_jitter_factor=0.5,
      cache_policy=NO_CACHE, task_run_name="process-chunk-{chunk.index}")
def process_chunk(load: ChunkLoad, chunk: ChunkSpec) -> loader.ChunkResult:
    """Load one chunk's rows and rejects and mark it done, all in one transaction (here, or in a child).

    The load holds a slot of the ``load.db_write_limit`` global concurrency limit throughout.
    """
    db, storage, job_id, uri = load.db, load.storage, load.job_id, load.uri
    # While it waits for a slot and loads, the chunk keeps its job's lease: a run waiting its turn is alive.
    with lease.keep_alive(db.engine, job_id, load.lease_seconds / LEASE_BEATS), \
            db_write_slot(load.db_write_limit.strip(), chunk.index):
        if load.isolation == "subprocess":
            from clientes_ingest import chunk_worker

            result = chunk_worker.run_chunk(db, storage, job_id, uri, chunk, block_size=load.block_size,
                                            max_line_bytes=load.max_line_bytes, policy=load.policy)
            progress.emit("load", chunk.end - chunk.start)  # the child's own events do not reach this process
        else:
            from clientes_ingest import loader

            result = loader.load_chunk(db, storage, job_id, uri, chunk, block_size=load.block_size,
                                       max_line_bytes=load.max_line_bytes, policy=load.policy)
    if result.stopped:
        get_run_logger().info("chunk %d: not loaded, job %d was refused (rejected_file)", chunk.index, job_id)
        return result
    get_run_logger().info("chunk %d: %s %d rows, %d rejects in %.1fs", chunk.index,
                          "skipped (already committed)," if result.skipped else "loaded", result.rows_loaded,
                          result.rows_rejected, result.duration_s)
    return result


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def finalize_job(db: Database, job_id: int, policy: RejectPolicy | None = None) -> job_queries.JobSummary:
    """Sum committed chunks into the job and set its final status (``rejected_file`` past the guard)."""
    return jobs.finalize_job(db.engine, job_id, policy)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_job(db: Database, job_id: int) -> job_queries.JobSummary:
    """Read a job's stored summary."""
    return job_queries.get_job(db.engine, job_id)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def fail_job(db: Database, job_id: int, error: str) -> None:
    """Mark a pre-registered job failed when its run cannot start loading."""
    jobs.fail_job(db.engine, job_id, error)


@task(cache_policy=NO_CACHE)
def publish_report(
    summary: job_queries.JobSummary, chunks: list[dict[str, Any]] | None = None,
    history: list[quality.PastJob] | None = None,
) -> list[quality.ReasonTrend]:
    """Publish the run's summary (markdown, with the reject-share trend) and its rejects by reason (table).

    Returns the trend of each reason against ``history`` (the last completed jobs).
    """
    key = f"clientes-job-{summary.job_id}"
    trends = quality.compare(summary, history or [])
    markdown = report.summary_markdown(summary, chunks) + "\n" + quality.trend_markdown(trends, len(history or []))
    create_markdown_artifact(markdown=markdown, key=key, description=f"Ingest job {summary.job_id}: {summary.status}")
    create_table_artifact(table=report.rejects_table(summary), key=f"{key}-rejects",
                          description=f"Rejects by reason, job {summary.job_id}")
    return trends


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_reject_history(db: Database, job_id: int) -> list[quality.PastJob]:
    """Rejects per reason of the last completed jobs before this one (for the trend)."""
    return quality.reject_history(db.engine, job_id)


@task(retries=2, retry_delay_seconds=backoff(2), cache_policy=NO_CACHE)
def emit_job_events(summary: job_queries.JobSummary, trends: list[quality.ReasonTrend] | None = None) -> list[str]:
    """Emit the Prefect event of the job's final status, and one for reject-share jumps; returns their names.

    Emitted from the task run, so Prefect relates them to the flow run, its deployment and tags.
    """
    emitted = []
    for event in (job_events.lifecycle_event(summary), job_events.jump_event(summary, quality.jumps(trends or []))):
        if event is not None:
            emit_event(event=event.event, resource=event.resource, payload=event.payload)
            emitted.append(event.event)
    if emitted:
        get_run_logger().info("job %d: emitted %s", summary.job_id, ", ".join(emitted))
    return emitted


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_snapshot(db: Database) -> dict[str, int | None]:
    """The job ``clientes_vigentes`` shows now and its row count."""
    from clientes_ingest.db import current_snapshot

    return current_snapshot(db.engine)


@task(retries=3, retry_delay_seconds=backoff(3), cache_policy=NO_CACHE)
def read_chunks(db: Database, job_id: int) -> list[dict[str, Any]]:
    """Per-chunk measurements of a job (for the report)."""
    return job_queries.job_chunks(db.engine, job_id)
