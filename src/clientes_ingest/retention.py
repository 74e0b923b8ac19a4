"""Retention: delete what old jobs left behind (stored file, rejects, optionally their ``clientes`` rows).

A job is purged when it finished (any status but ``running`` or ``pending``) before the cutoff. The
newest completed job is never purged: its rows are the current data, whatever its age. Per job:

1. the job is fenced: ``purge_started_at`` is set and ``runs`` bumped in one conditional UPDATE, so a
   run that read the job before cannot take it over afterwards (``lease.take_over`` is an optimistic
   lock on ``runs``) and no later run resumes it (``jobs`` refuses a purged job);
2. unless rows are kept, the job's sha256 claim is released first, so the same file can be loaded
   again as a new job, and no run is ever told "already loaded" while the rows are being deleted;
3. the stored object is deleted, unless another job that is not purged reads the same URI (local
   storage is content-addressed: a ``--force`` reload shares its object);
4. rejects, then rows, are deleted in windows of ``batch_lines`` line numbers, one transaction each;
5. ``purged_at`` (and ``rows_purged_at``) record the end.

Every step is idempotent: a purge killed at any point is completed by the next one. With rows kept,
the claim stays (the rows are still there, so sending the same file again is "already loaded"); a
later purge without ``keep_rows`` removes the rows of a job purged with them kept.

A run that stored a copy of its file and then found its content owned by another job (already loaded,
refused, loading elsewhere) deletes that copy at once (``discard_unregistered_copy``): no job row names
it, so no purge ever would.
Requires: an engine with the schema; a function from a stored URI to the ``Storage`` that owns it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from clientes_ingest.db import clientes, ingest_file_claims, ingest_jobs, ingest_rejects, utcnow
from clientes_ingest.settings import parse_age
from clientes_ingest.statuses import ACTIVE, DONE
from clientes_ingest.storage import Storage, StorageError

ACTIVE_STATUSES = ACTIVE  # never purged: a run holds the job, or one is about to start
DONE_STATUSES = DONE
DEFAULT_BATCH_LINES = 50_000


StorageFor = Callable[[str], Storage | None]


class PurgeError(RuntimeError):
    """A purge step failed; the message names the job and the cause."""


def cutoff_for(older_than: str, now: dt.datetime | None = None) -> dt.datetime:
    """The finish time before which jobs are purged: ``older_than`` (e.g. ``30d``) before now (naive UTC)."""
    return (now or utcnow()) - parse_age(older_than)


@dataclass
class PurgedJob:
    """What the purge did (or, in a dry run, would do) to one job."""

    job_id: int
    file_name: str
    status: str
    finished_at: dt.datetime
    source_uri: str
    object: str  # deleted, missing, shared, outside storage, kept (dry run: would be deleted, ...)
    rejects_deleted: int = 0
    rows_deleted: int = 0
    claim_released: bool = False
    rows_kept: bool = False


def candidates_statement(cutoff: dt.datetime, keep_rows: bool, limit: int) -> sa.Select[Any]:
    """Jobs finished before ``cutoff`` with something left to purge, oldest first (never the newest done)."""
    j = ingest_jobs.c
    newest_done = sa.select(sa.func.max(j.id)).where(j.status.in_(DONE_STATUSES)).scalar_subquery()
    left = j.purged_at.is_(None) if keep_rows else sa.or_(j.purged_at.is_(None), j.rows_purged_at.is_(None))
    return (sa.select(j.id, j.runs, j.file_name, j.status, j.finished_at, j.source_uri, j.sha256,
                      j.purge_started_at, j.purged_at, j.rows_purged_at)
            .where(j.status.not_in(ACTIVE_STATUSES), j.finished_at.is_not(None), j.finished_at < cutoff,
                   sa.or_(newest_done.is_(None), j.id != newest_done), left)
            .order_by(j.finished_at, j.id).limit(limit))


def find_purgeable(engine: Engine, cutoff: dt.datetime, *, keep_rows: bool = False,
                   limit: int = 1000) -> list[dict[str, Any]]:
    """The jobs a purge with this cutoff would touch, oldest first."""
    if not sa.inspect(engine).has_table(ingest_jobs.name):
        return []
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(candidates_statement(cutoff, keep_rows, limit)).mappings()]


def fence_statement(job_id: int, runs: int, cutoff: dt.datetime, now: dt.datetime) -> sa.Update:
    """Mark a finished job as being purged, only if no run took it over since it was read."""
    j = ingest_jobs.c
    return (ingest_jobs.update()
            .where(j.id == job_id, j.runs == runs, j.status.not_in(ACTIVE_STATUSES), j.finished_at < cutoff)
            .values(purge_started_at=sa.func.coalesce(j.purge_started_at, now), runs=j.runs + 1))


def delete_window_statements(job_id: int, low: int, high: int) -> tuple[sa.Delete, sa.Delete]:
    """Deletes of one job's rejects and rows with line numbers in ``(low, high]`` (a key range seek)."""
    r, c = ingest_rejects.c, clientes.c
    return (ingest_rejects.delete().where(r.job_id == job_id, r.line_number > low, r.line_number <= high),
            clientes.delete().where(c.JobId == job_id, c.LineNumber > low, c.LineNumber <= high))


def purge_job(engine: Engine, job: Mapping[str, Any], storage_for: StorageFor, cutoff: dt.datetime, *,
              keep_rows: bool = False, batch_lines: int = DEFAULT_BATCH_LINES) -> PurgedJob | None:
    """Purge one job (see the module docstring); None when a run took the job over meanwhile."""
    job_id = int(job["id"])
    if job["purge_started_at"] is None:
        with engine.begin() as conn:
            if conn.execute(fence_statement(job_id, int(job["runs"]), cutoff, utcnow())).rowcount != 1:
                return None
    result = PurgedJob(job_id=job_id, file_name=job["file_name"], status=job["status"],
                       finished_at=job["finished_at"], source_uri=job["source_uri"], object="kept",
                       rows_kept=keep_rows)
    if not keep_rows:
        result.claim_released = _release_claim(engine, job_id, job["sha256"])
    if job["purged_at"] is None:
        result.object = _delete_object(engine, job_id, job["source_uri"], storage_for)
        result.rejects_deleted = _delete_in_windows(engine, job_id, batch_lines, rows=False)
    if not keep_rows:
        result.rows_deleted = _delete_in_windows(engine, job_id, batch_lines, rows=True)
    now = utcnow()
    values: dict[str, Any] = {"purged_at": sa.func.coalesce(ingest_jobs.c.purged_at, now)}
    if not keep_rows:
        values["rows_purged_at"] = now
    with engine.begin() as conn:
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(**values))
    return result


def purge_old_jobs(engine: Engine, storage_for: StorageFor, cutoff: dt.datetime, *, keep_rows: bool = False,
                   dry_run: bool = False, limit: int = 1000,
                   batch_lines: int = DEFAULT_BATCH_LINES) -> list[PurgedJob]:
    """Purge up to ``limit`` jobs finished before ``cutoff`` (or, with ``dry_run``, say what would go)."""
    found = find_purgeable(engine, cutoff, keep_rows=keep_rows, limit=limit)
    if dry_run:
        return [preview_job(engine, job, storage_for, keep_rows=keep_rows) for job in found]
    done = []
    for job in found:
        purged = purge_job(engine, job, storage_for, cutoff, keep_rows=keep_rows, batch_lines=batch_lines)
        if purged is not None:
            done.append(purged)
    return done


def preview_job(engine: Engine, job: Mapping[str, Any], storage_for: StorageFor, *, keep_rows: bool) -> PurgedJob:
    """What ``purge_job`` would remove from this job, changing nothing."""
    job_id = int(job["id"])
    with engine.connect() as conn:
        rejects = 0 if job["purged_at"] is not None else _count(conn, ingest_rejects, ingest_rejects.c.job_id, job_id)
        rows = 0 if keep_rows else _count(conn, clientes, clientes.c.JobId, job_id)
        claimed = not keep_rows and _claim_of(conn, job_id, job["sha256"])
        shared = _shared(conn, job_id, job["source_uri"])
    if job["purged_at"] is not None:
        state = "kept"
    else:
        state = _object_state(job["source_uri"], storage_for, shared)
        state = "would be deleted" if state == "present" else state
    return PurgedJob(job_id=job_id, file_name=job["file_name"], status=job["status"], finished_at=job["finished_at"],
                     source_uri=job["source_uri"], object=state, rejects_deleted=rejects, rows_deleted=rows,
                     claim_released=claimed, rows_kept=keep_rows)


def _count(conn: Connection, table: sa.Table, column: sa.Column[Any], job_id: int) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(column == job_id)).scalar_one())


def _claim_of(conn: Connection, job_id: int, sha256: str | None) -> bool:
    if sha256 is None:
        return False
    f = ingest_file_claims.c
    return conn.execute(sa.select(f.job_id).where(f.sha256 == sha256, f.job_id == job_id)).first() is not None


def _release_claim(engine: Engine, job_id: int, sha256: str | None) -> bool:
    """Drop the job's claim on its content (only if this job holds it: a duplicate job holds none)."""
    if sha256 is None:
        return False
    f = ingest_file_claims.c
    with engine.begin() as conn:
        return conn.execute(ingest_file_claims.delete().where(f.sha256 == sha256, f.job_id == job_id)).rowcount == 1


def _shared(conn: Connection, job_id: int, uri: str) -> bool:
    """Whether a job that is not purged (nor being purged) reads the same stored object."""
    j = ingest_jobs.c
    other = sa.select(j.id).where(j.source_uri == uri, j.id != job_id, j.purge_started_at.is_(None)).limit(1)
    return conn.execute(other).first() is not None


def _object_state(uri: str, storage_for: StorageFor, shared: bool) -> str:
    if shared:
        return "shared"
    storage = storage_for(uri)
    if storage is None or not storage.owns(uri):
        return "outside storage"
    return "present" if storage.exists(uri) else "missing"


def _delete_object(engine: Engine, job_id: int, uri: str, storage_for: StorageFor) -> str:
    with engine.connect() as conn:
        shared = _shared(conn, job_id, uri)
    state = _object_state(uri, storage_for, shared)
    if state != "present":
        return state
    storage = storage_for(uri)
    assert storage is not None  # _object_state found it present
    try:
        storage.delete(uri)
    except StorageError as exc:
        raise PurgeError(f"job {job_id}: cannot delete its stored file: {exc}") from exc
    return "deleted"


def _delete_in_windows(engine: Engine, job_id: int, batch_lines: int, *, rows: bool) -> int:
    """Delete a job's rejects (or rows) ``batch_lines`` line numbers at a time; the number deleted."""
    job_col, line_col = ((clientes.c.JobId, clientes.c.LineNumber) if rows else
                         (ingest_rejects.c.job_id, ingest_rejects.c.line_number))
    with engine.connect() as conn:
        low, high = conn.execute(sa.select(sa.func.min(line_col), sa.func.max(line_col))
                                 .where(job_col == job_id)).one()
    if low is None:
        return 0
    deleted = 0
    start = int(low) - 1
    while start < high:
        stop = min(start + batch_lines, int(high))
        statement = delete_window_statements(job_id, start, stop)[1 if rows else 0]
        with engine.begin() as conn:
            deleted += conn.execute(statement).rowcount
        start = stop
    return deleted


def discard_unregistered_copy(engine: Engine, storage: Storage, source: str, staged_uri: str,
                              registered_uri: str) -> str:
    """Delete ``staged_uri``, the copy of ``source`` a run stored, when the job it registered reads another
    object; what happened to it: ``deleted``, or why it stays.

    It stays when it is the caller's own object (``in place``: an ``s3://`` source is read where it is),
    the job's object (``registered``), named by any job row (``referenced``), or in content-addressed
    storage (``shared``: local storage gives the same content under the same name the same object, which
    another run may be registering now).
    """
    if staged_uri == source:
        return "in place"
    if staged_uri == registered_uri:
        return "registered"
    if storage.content_addressed:
        return "shared"
    with engine.connect() as conn:
        named = sa.select(ingest_jobs.c.id).where(ingest_jobs.c.source_uri == staged_uri).limit(1)
        if conn.execute(named).first() is not None:
            return "referenced"
    storage.delete(staged_uri)
    return "deleted"
