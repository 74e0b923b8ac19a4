"""Job lifecycle in the database: register a file and its chunks, pre-register an upload, finalize the counts.

Exactly-once rests on two keys: a file's content (sha256) is claimed by one job in
``ingest_file_claims`` (a primary key, so of two concurrent runs only one registers), and every row
and reject is keyed on (job, line number) and committed with its chunk's status in one transaction
(see ``loader``). A run that dies without finalizing leaves its job 'running'; another run takes it over
once its heartbeat is older than the lease (setting ``job_lease_seconds``, default 900 s; see ``lease``).
Reading jobs back is ``job_queries``.
Requires: an engine whose schema exists (``Database.ensure_schema``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from clientes_ingest import rejection
from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import ingest_chunks, ingest_file_claims, ingest_jobs, utcnow
from clientes_ingest.guard import RejectPolicy, Tally, describe, final_verdict
from clientes_ingest.job_queries import JobError, JobSummary, get_job, job_row
from clientes_ingest.lease import DEFAULT_LEASE_SECONDS, Holder, Owner, holder_of, is_live, owned_by, take_over
from clientes_ingest.statuses import DONE, Action, ChunkStatus, JobStatus
from clientes_ingest.storage import ObjectVersion

DONE_STATUSES = DONE
REJECTED_FILE = rejection.REJECTED_FILE


@dataclass(frozen=True)
class StagedFile:
    """A file in storage, hashed and planned in one streaming pass, and the object version that was read."""

    uri: str
    name: str
    size: int
    sha256: str
    chunk_size: int
    chunks: tuple[ChunkSpec, ...]
    total_lines: int
    version: ObjectVersion | None = None


@dataclass(frozen=True)
class JobSource:
    """What a registered job pins before its run reads a byte: the object version and content (sha256)
    it was registered for and, for an upload planned while it was stored, that plan (``staged``)."""

    uri: str
    sha256: str | None
    version: ObjectVersion | None
    staged: StagedFile | None = None


@dataclass(frozen=True)
class Registration:
    """What a run must do for its file: which job, and which chunks are still to load."""

    job_id: int
    action: Action
    uri: str
    pending: tuple[ChunkSpec, ...] = ()
    chunk_count: int = 0
    holder: Holder | None = None  # IN_PROGRESS: the run that holds the job


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise JobError("the database returned no id for the new job")
    return int(key[0])


def _staged_values(staged: StagedFile) -> dict[str, Any]:
    version = staged.version or ObjectVersion()
    return dict(source_uri=staged.uri, file_name=staged.name, size_bytes=staged.size, sha256=staged.sha256,
                source_version_id=version.version_id, source_etag=version.etag, chunk_size=staged.chunk_size,
                chunk_count=len(staged.chunks), total_lines=staged.total_lines)


def _insert_job(conn: Connection, staged: StagedFile, flow_run_id: str | None, owner: Owner | None) -> int:
    result = conn.execute(
        ingest_jobs.insert().values(
            **_staged_values(staged), status=JobStatus.RUNNING, started_at=utcnow(), heartbeat_at=utcnow(), runs=1,
            **owned_by(owner, flow_run_id),
        )
    )
    job_id = _new_id(result)
    _insert_chunks(conn, job_id, staged.chunks)
    return job_id


def _insert_chunks(conn: Connection, job_id: int, chunks: tuple[ChunkSpec, ...]) -> None:
    if chunks:
        conn.execute(
            ingest_chunks.insert(),
            [dict(job_id=job_id, chunk_no=c.index, start_offset=c.start, end_offset=c.end,
                  first_line=c.first_line, line_count=c.line_count) for c in chunks],
        )


def _pending_chunks(conn: Connection, job_id: int) -> tuple[ChunkSpec, ...]:
    rows = conn.execute(
        sa.select(ingest_chunks).where(ingest_chunks.c.job_id == job_id, ingest_chunks.c.status != ChunkStatus.DONE)
        .order_by(ingest_chunks.c.chunk_no)
    ).mappings()
    return tuple(ChunkSpec(index=r["chunk_no"], start=r["start_offset"], end=r["end_offset"],
                           first_line=r["first_line"], line_count=r["line_count"]) for r in rows)


def _decide_for_existing(
    conn: Connection, job: sa.RowMapping, flow_run_id: str | None, lease_seconds: float, owner: Owner | None,
    holder_dead: bool = False,
) -> Registration:
    """What to do with the job that owns this content. ``holder_dead``: its holder was found provably dead
    (by ``register_job``'s ``holder_is_dead``), so it is taken over although its lease has not expired."""
    job_id = int(job["id"])
    if job["purge_started_at"] is not None and not (job["status"] in DONE_STATUSES and job["rows_purged_at"] is None):
        raise JobError(purged_message(job) + "; load the file again as a new job with force (--force)")
    count = job["chunk_count"] or 0
    if job["status"] in DONE_STATUSES:
        return Registration(job_id, Action.ALREADY_LOADED, job["source_uri"], (), count)
    if job["status"] == REJECTED_FILE:
        return Registration(job_id, Action.REJECTED, job["source_uri"], (), count)
    ours = flow_run_id is not None and job["flow_run_id"] == flow_run_id  # this run registered it (a retry)
    live = is_live(job, lease_seconds) and not holder_dead and not ours
    if live or not take_over(conn, job, flow_run_id, owner):
        fresh = job_row(conn, job_id) if not live else job  # who won the takeover, if we lost it
        return Registration(job_id, Action.IN_PROGRESS, job["source_uri"], (), count, holder_of(fresh or job))
    return Registration(job_id, Action.RESUME, job["source_uri"], _pending_chunks(conn, job_id), count)


def purged_message(job: sa.RowMapping) -> str:
    """Why a purged job cannot be resumed or reloaded in place (retention deleted its file and rejects)."""
    gone = "stored file, rejects and rows" if job["rows_purged_at"] is not None else "stored file and rejects"
    return (f"job {job['id']} ({job['status']}) was purged by retention on {job['purge_started_at']:%Y-%m-%d %H:%M} "
            f"(its {gone} are deleted) and cannot be resumed")


def register_job(
    engine: Engine,
    staged: StagedFile,
    *,
    force: bool = False,
    job_id: int | None = None,
    flow_run_id: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    owner: Owner | None = None,
    holder_is_dead: Callable[[Holder], bool] | None = None,
) -> Registration:
    """Register (or find) the job for a staged file and say what this run must load.

    ``job_id`` names a pre-registered job (e.g. by the webhook) or an unfinished job to resume.
    ``force`` loads the content again as a new job even if a completed (or refused) job already loaded it.
    A job held by another run is taken over when that run stopped heart-beating for ``lease_seconds``,
    or at once when ``holder_is_dead(holder)`` proves it dead (e.g. its process is gone: ``lease``);
    otherwise the answer is ``IN_PROGRESS`` with the ``holder``. ``owner`` is this run's process, recorded
    on the job so that the next run can tell whether it is alive. A failed job is resumed.
    """
    registration = _register(engine, staged, force=force, job_id=job_id, flow_run_id=flow_run_id,
                             lease_seconds=lease_seconds, owner=owner)
    holder = registration.holder
    if registration.action != Action.IN_PROGRESS or holder is None or holder_is_dead is None \
            or not holder_is_dead(holder):
        return registration
    with engine.begin() as conn:  # the holder is dead: take over, unless another run did since we looked
        job = job_row(conn, registration.job_id)
        assert job is not None
        return _decide_for_existing(conn, job, flow_run_id, lease_seconds, owner,
                                    holder_dead=int(job["runs"]) == holder.runs)


def _register(
    engine: Engine, staged: StagedFile, *, force: bool, job_id: int | None, flow_run_id: str | None,
    lease_seconds: float, owner: Owner | None,
) -> Registration:
    if job_id is not None:
        return _register_existing(engine, staged, job_id, force=force, flow_run_id=flow_run_id,
                                  lease_seconds=lease_seconds, owner=owner)
    for _attempt in range(3):
        try:
            with engine.begin() as conn:
                claim = conn.execute(
                    sa.select(ingest_file_claims.c.job_id).where(ingest_file_claims.c.sha256 == staged.sha256)
                ).scalar_one_or_none()
                if claim is None:
                    new_id = _insert_job(conn, staged, flow_run_id, owner)
                    conn.execute(ingest_file_claims.insert().values(sha256=staged.sha256, job_id=new_id))
                    return Registration(new_id, Action.LOAD, staged.uri, staged.chunks, len(staged.chunks))
                if force:
                    new_id = _insert_job(conn, staged, flow_run_id, owner)
                    conn.execute(ingest_file_claims.update().where(ingest_file_claims.c.sha256 == staged.sha256)
                                 .values(job_id=new_id, claimed_at=utcnow()))
                    return Registration(new_id, Action.LOAD, staged.uri, staged.chunks, len(staged.chunks))
                job = job_row(conn, claim)
                assert job is not None  # foreign key
                return _decide_for_existing(conn, job, flow_run_id, lease_seconds, owner)
        except IntegrityError:
            # Another run claimed this content between our read and our insert: decide again.
            continue
    raise JobError(f"could not register {staged.uri}: the claim on sha256 {staged.sha256[:12]} kept changing")


def _register_existing(
    engine: Engine, staged: StagedFile, job_id: int, *, force: bool, flow_run_id: str | None, lease_seconds: float,
    owner: Owner | None,
) -> Registration:
    with engine.begin() as conn:
        job = job_row(conn, job_id)
        if job is None:
            raise JobError(f"job {job_id} does not exist: omit job_id to register a new job")
        if job["purge_started_at"] is not None:
            raise JobError(purged_message(job) + "; omit job_id to load the file as a new job")
        if job["sha256"] not in (None, staged.sha256):
            raise JobError(f"job {job_id} was registered for other content (sha256 {job['sha256'][:12]}, "
                           f"this file is {staged.sha256[:12]}): omit job_id to register a new job")
        has_chunks = conn.execute(
            sa.select(sa.func.count()).select_from(ingest_chunks).where(ingest_chunks.c.job_id == job_id)
        ).scalar_one()
        if has_chunks and job["status"] != JobStatus.PENDING:
            if job["status"] in DONE_STATUSES and not force:
                return Registration(job_id, Action.ALREADY_LOADED, job["source_uri"], (), job["chunk_count"] or 0)
            return _decide_for_existing(conn, job, flow_run_id, lease_seconds, owner)
        # A pre-registered job (status pending; its chunks too when the upload was planned as it was
        # stored): this run owns it, unless the same content is already claimed by another job.
        claim = conn.execute(
            sa.select(ingest_file_claims.c.job_id).where(ingest_file_claims.c.sha256 == staged.sha256)
        ).scalar_one_or_none()
        if claim is not None and claim != job_id and not force:
            conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(
                status=JobStatus.DUPLICATE, sha256=staged.sha256, size_bytes=staged.size, finished_at=utcnow(),
                error=f"same content as job {claim}"))
            other = job_row(conn, claim)
            assert other is not None
            return _decide_for_existing(conn, other, flow_run_id, lease_seconds, owner)
        running = dict(status=JobStatus.RUNNING, started_at=utcnow(), heartbeat_at=utcnow(), runs=1,
                       **owned_by(owner, flow_run_id))
        if has_chunks:  # planned at upload: that plan (and object) is the job's, whatever this run staged
            conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(**running))
            _claim(conn, staged.sha256, job_id, claim)
            return Registration(job_id, Action.LOAD, job["source_uri"], _pending_chunks(conn, job_id),
                                job["chunk_count"] or 0)
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(**_staged_values(staged), **running))
        _insert_chunks(conn, job_id, staged.chunks)
        _claim(conn, staged.sha256, job_id, claim)
        return Registration(job_id, Action.LOAD, staged.uri, staged.chunks, len(staged.chunks))


def _claim(conn: Connection, sha256: str, job_id: int, current: int | None) -> None:
    """Make ``job_id`` the owner of content ``sha256`` (``current``: its owner so far, if any)."""
    if current is None:
        conn.execute(ingest_file_claims.insert().values(sha256=sha256, job_id=job_id))
    else:
        conn.execute(ingest_file_claims.update().where(ingest_file_claims.c.sha256 == sha256)
                     .values(job_id=job_id, claimed_at=utcnow()))


def create_pending_job(engine: Engine, source_uri: str, file_name: str, *, staged: StagedFile | None = None,
                       version: ObjectVersion | None = None) -> int:
    """Pre-register a job (e.g. when an upload is accepted) so its id can be returned at once.

    With ``staged`` (an upload hashed and planned while it was stored) the job records its sha256, object
    version and chunk plan: its run reads that plan instead of reading and hashing the file again, and
    reads only that version. With ``version`` alone (an object named by an event or a request) the run
    reads that version, and the content it hashes is pinned when it registers.
    """
    values: dict[str, Any] = dict(source_uri=source_uri, file_name=file_name, status=JobStatus.PENDING)
    if staged is not None:
        values.update(_staged_values(staged))
    elif version is not None:
        values.update(source_version_id=version.version_id, source_etag=version.etag)
    with engine.begin() as conn:
        job_id = _new_id(conn.execute(ingest_jobs.insert().values(**values)))
        if staged is not None:
            _insert_chunks(conn, job_id, staged.chunks)
        return job_id


def job_source(engine: Engine, job_id: int) -> JobSource | None:
    """What job ``job_id`` pins (version, sha256, and its plan when pre-staged); None if there is no such job."""
    with engine.connect() as conn:
        job = job_row(conn, job_id)
        if job is None:
            return None
        version = ObjectVersion.of(job["source_version_id"], job["source_etag"])
        staged = None
        if job["status"] == JobStatus.PENDING and job["sha256"] is not None:
            chunks = _pending_chunks(conn, job_id)
            if chunks:
                staged = StagedFile(uri=job["source_uri"], name=job["file_name"], size=job["size_bytes"],
                                    sha256=job["sha256"], chunk_size=job["chunk_size"], chunks=chunks,
                                    total_lines=job["total_lines"], version=version)
    return JobSource(job["source_uri"], job["sha256"], version, staged)


def fail_job(engine: Engine, job_id: int, error: str) -> None:
    """Mark a job failed with an error text (used when a run fails before finalizing)."""
    with engine.begin() as conn:
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id)
                     .values(status=JobStatus.FAILED, error=error[:4000], finished_at=utcnow()))


def finalize_job(engine: Engine, job_id: int, policy: RejectPolicy | None = None) -> JobSummary:
    """Sum the committed chunks into the job row and set its final status.

    A job whose chunks are all committed but whose rejected share exceeds ``policy.max_ratio`` ends
    ``rejected_file`` (its ``clientes`` rows removed, see ``rejection``); a job refused early stays so.
    """
    policy = policy or RejectPolicy()
    c = ingest_chunks.c
    done = sa.case((c.status == ChunkStatus.DONE, 1), else_=0)
    with engine.begin() as conn:
        agg = conn.execute(
            sa.select(
                sa.func.count().label("chunks"), sa.func.coalesce(sa.func.sum(done), 0).label("done"),
                sa.func.coalesce(sa.func.sum(c.rows_loaded), 0).label("rows"),
                sa.func.coalesce(sa.func.sum(c.rows_rejected), 0).label("rejects"),
                sa.func.coalesce(sa.func.sum(c.blank_lines), 0).label("blank"),
                sa.func.coalesce(sa.func.sum(c.line_count), 0).label("lines"),
                sa.func.max(c.peak_rss_bytes).label("rss"),
            ).where(c.job_id == job_id)
        ).one()
        failed_error = conn.execute(
            sa.select(c.error).where(c.job_id == job_id, c.status != ChunkStatus.DONE, c.error.is_not(None))
            .order_by(c.chunk_no).limit(1)
        ).scalar_one_or_none()
        job = job_row(conn, job_id)
        if job is None:
            raise JobError(f"job {job_id} does not exist")
        rows = agg.rows
        tally = Tally(agg.lines, agg.blank, agg.rejects, rejection.reason_counts(conn, job_id))
        if job["status"] == REJECTED_FILE:
            status, error, rows = REJECTED_FILE, job["error"], 0
        elif agg.done == agg.chunks and final_verdict(policy, tally):
            status, rows = REJECTED_FILE, 0
            error = describe(policy, tally, file_lines=agg.lines, early=False)
            rejection.remove_rows(conn, job_id)
        elif agg.done == agg.chunks:
            status, error = (JobStatus.COMPLETED_WITH_REJECTS if agg.rejects else JobStatus.COMPLETED), None
        else:
            status = JobStatus.FAILED
            error = f"{agg.chunks - agg.done} of {agg.chunks} chunks not loaded"
            if failed_error:
                error += f"; first error: {failed_error}"
        now = utcnow()
        started = job["started_at"]
        duration = (now - started.replace(tzinfo=None)).total_seconds() if started is not None else None
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(
            status=status, rows_loaded=rows, rows_rejected=agg.rejects, blank_lines=agg.blank,
            total_lines=agg.lines, peak_rss_bytes=agg.rss, finished_at=utcnow(), duration_s=duration, error=error))
    return get_job(engine, job_id)
