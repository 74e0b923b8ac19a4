"""A job's rows read back: its summary and counts, the recent jobs, per-chunk progress, its rejects.

Read-only queries of the job tables (``jobs`` registers and finalizes, ``lease`` tracks who holds a job).
Rejects are paged on their key (job, line number), so every page is an index seek however deep.
Requires: an engine whose schema exists (``Database.ensure_schema``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection, Engine

from clientes_ingest import rejection
from clientes_ingest.db import ingest_chunks, ingest_jobs, ingest_rejects
from clientes_ingest.statuses import ChunkStatus


class JobError(RuntimeError):
    """A job cannot be found, registered or resumed as asked; the message says why and what to do."""


class JobSummary(BaseModel):
    """A job's state and counts, as stored (``flow_results.IngestResult`` adds what a run did with it)."""

    job_id: int
    status: str
    source_uri: str
    file_name: str
    size_bytes: int | None
    sha256: str | None
    chunk_count: int
    chunks_done: int
    total_lines: int
    blank_lines: int
    rows_loaded: int
    rows_rejected: int
    duration_s: float | None
    peak_rss_bytes: int | None
    error: str | None
    rejects_by_reason: dict[str, int] = Field(default_factory=dict)
    rejects_not_stored: int = 0  # counted (in rows_rejected and rejects_by_reason) but over the stored cap
    owner_host: str | None = None
    owner_pid: int | None = None
    owner_since: dt.datetime | None = None
    flow_run_id: str | None = None
    heartbeat_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @property
    def rows_per_second(self) -> float | None:
        if not self.duration_s:
            return None
        return self.rows_loaded / self.duration_s


def job_row(conn: Connection, job_id: int) -> sa.RowMapping | None:
    """Job ``job_id``'s row as stored, None if there is no such job."""
    return conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.id == job_id)).mappings().first()


def rejects_by_reason(conn: Connection, job_id: int) -> dict[str, int]:
    """Rejects per reason, most frequent first; exact even when the stored-rejects cap kept some out."""
    return rejection.reason_counts(conn, job_id)


def _summary(conn: Connection, job: sa.RowMapping) -> JobSummary:
    done = conn.execute(
        sa.select(sa.func.count())
        .where(ingest_chunks.c.job_id == job["id"], ingest_chunks.c.status == ChunkStatus.DONE)
    ).scalar_one()
    return JobSummary(
        job_id=int(job["id"]), status=job["status"], source_uri=job["source_uri"], file_name=job["file_name"],
        size_bytes=job["size_bytes"], sha256=job["sha256"], chunk_count=job["chunk_count"] or 0,
        chunks_done=int(done), total_lines=job["total_lines"] or 0, blank_lines=job["blank_lines"] or 0,
        rows_loaded=job["rows_loaded"] or 0, rows_rejected=job["rows_rejected"] or 0,
        duration_s=job["duration_s"], peak_rss_bytes=job["peak_rss_bytes"], error=job["error"],
        rejects_by_reason=rejects_by_reason(conn, int(job["id"])),
        rejects_not_stored=rejection.not_stored(conn, int(job["id"])), owner_host=job["owner_host"],
        owner_pid=job["owner_pid"], owner_since=job["owner_since"], flow_run_id=job["flow_run_id"],
        heartbeat_at=job["heartbeat_at"],
    )


def get_job(engine: Engine, job_id: int) -> JobSummary:
    """One job's summary; JobError if there is no such job."""
    with engine.connect() as conn:
        job = job_row(conn, job_id)
        if job is None:
            raise JobError(f"job {job_id} does not exist")
        return _summary(conn, job)


def list_jobs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent jobs, newest first, as plain dicts."""
    j = ingest_jobs.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(j.id, j.file_name, j.status, j.rows_loaded, j.rows_rejected, j.total_lines, j.duration_s,
                      j.created_at).order_by(j.id.desc()).limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


def job_chunks(engine: Engine, job_id: int) -> list[dict[str, Any]]:
    """Per-chunk progress and measurements of a job."""
    c = ingest_chunks.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.chunk_no, c.status, c.attempts, c.first_line, c.line_count, c.start_offset, c.end_offset,
                      c.rows_loaded, c.rows_rejected, c.blank_lines, c.duration_s, c.peak_rss_bytes,
                      c.cpu_seconds, c.error).where(c.job_id == job_id).order_by(c.chunk_no)
        ).mappings()
        return [dict(r) for r in rows]


def list_rejects(
    engine: Engine, job_id: int, *, after: int | None = None, limit: int = 100, reason: str | None = None
) -> list[dict[str, Any]]:
    """A page of a job's rejects in line order: the first ``limit`` whose line number is above ``after``.

    Keyset paging on the table's key (job, line number): pass the last line number of a page as ``after``
    to get the next one. Every page is an index seek, however deep, where OFFSET would scan the skipped rows.
    """
    r = ingest_rejects.c
    query = sa.select(r.line_number, r.reason, r.raw_line, r.raw_length).where(r.job_id == job_id)
    if after is not None:
        query = query.where(r.line_number > after)
    if reason:
        query = query.where(r.reason == reason)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(r.line_number).limit(limit)).mappings()
        return [dict(row) for row in rows]


def reject_pages(
    engine: Engine, job_id: int, *, reason: str | None = None, page_size: int = 5000
) -> Iterator[list[dict[str, Any]]]:
    """Every reject of a job (or of one reason) in line order, as ``list_rejects`` pages: bounded memory."""
    after: int | None = None
    while True:
        rows = list_rejects(engine, job_id, after=after, limit=page_size, reason=reason)
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        after = rows[-1]["line_number"]


def reject_line_at(engine: Engine, job_id: int, position: int, *, reason: str | None = None) -> int | None:
    """The line number of the reject at 0-based ``position`` in line order, None past the last one.

    Turns an offset into a ``list_rejects`` cursor: ``after=reject_line_at(offset - 1)``. It walks the key
    up to ``position`` (an index-only scan), so it is for callers that only know an offset.
    """
    r = ingest_rejects.c
    query = sa.select(r.line_number).where(r.job_id == job_id)
    if reason:
        query = query.where(r.reason == reason)
    with engine.connect() as conn:
        line = conn.execute(query.order_by(r.line_number).offset(position).limit(1)).scalar_one_or_none()
    return None if line is None else int(line)
