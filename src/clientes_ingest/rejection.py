"""The database side of the reject guard (``guard``): exact reject counts, the stored-rejects cap, and
refusing a whole file (``rejected_file``).

* Every committed chunk writes its rejects per reason to ``ingest_reject_counts`` (``rejected``: all of
  them, ``stored``: those kept in ``ingest_rejects``), in its own transaction. Counts stay exact when the
  cap ``max_stored`` (``CLIENTES_MAX_STORED_REJECTS``) keeps rejects out of ``ingest_rejects``.
* A chunk commits only while its job is ``running``: ``hold_job`` updates the job row in the chunk's
  transaction, which locks it until the commit. ``reject_file`` takes the same lock, so a chunk either
  commits before the job is refused (and its rows are then removed with the others) or finds the job
  refused and rolls back; the cap is enforced under that lock too, so concurrent chunks cannot exceed it.
* A refused job keeps no row in ``clientes`` (they are deleted in the refusing transaction: consumers
  never see part of a file judged wrong); its counts, its stored rejects (up to the cap) and its stored
  file stay for inspection.

Requires: an engine whose schema exists.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from clientes_ingest.db import clientes, ingest_chunks, ingest_jobs, ingest_reject_counts, ingest_rejects, utcnow
from clientes_ingest.guard import Tally
from clientes_ingest.statuses import ChunkStatus, JobStatus

REJECTED_FILE = JobStatus.REJECTED_FILE


def committed_tally(conn: Connection, job_id: int) -> tuple[Tally, int, int]:
    """The committed chunks' tally (no reasons), the file's planned line count and the stored rejects."""
    c = ingest_chunks.c
    done = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(c.line_count), 0), sa.func.coalesce(sa.func.sum(c.blank_lines), 0),
                  sa.func.coalesce(sa.func.sum(c.rows_rejected), 0))
        .where(c.job_id == job_id, c.status == ChunkStatus.DONE)
    ).one()
    file_lines = conn.execute(sa.select(ingest_jobs.c.total_lines).where(ingest_jobs.c.id == job_id)).scalar()
    return Tally(int(done[0]), int(done[1]), int(done[2])), int(file_lines or 0), stored_rejects(conn, job_id)


def stored_rejects(conn: Connection, job_id: int) -> int:
    """Rejects of the job's committed chunks kept in ``ingest_rejects``."""
    r = ingest_reject_counts.c
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(r.stored), 0)).where(r.job_id == job_id))
               .scalar_one())


def reason_counts(conn: Connection, job_id: int) -> dict[str, int]:
    """Rejects per reason, most frequent first: exact (counted), whether or not they were all stored.

    Jobs loaded before the counts table existed fall back to counting ``ingest_rejects``.
    """
    r = ingest_reject_counts.c
    total = sa.func.sum(r.rejected)
    rows = conn.execute(sa.select(r.reason, total).where(r.job_id == job_id).group_by(r.reason)
                        .order_by(total.desc(), r.reason)).all()
    if not rows:
        x = ingest_rejects.c
        rows = conn.execute(sa.select(x.reason, sa.func.count()).where(x.job_id == job_id).group_by(x.reason)
                            .order_by(sa.func.count().desc(), x.reason)).all()
    return {reason: int(count) for reason, count in rows if count}


def not_stored(conn: Connection, job_id: int) -> int:
    """Rejects counted but not stored because of the cap."""
    r = ingest_reject_counts.c
    value = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(r.rejected - r.stored), 0))
                         .where(r.job_id == job_id)).scalar_one()
    return int(value)


def hold_job(conn: Connection, job_id: int) -> bool:
    """Lock the job row until the caller's transaction ends, if it is still ``running`` (else False)."""
    j = ingest_jobs.c
    result = conn.execute(ingest_jobs.update().where(j.id == job_id, j.status == JobStatus.RUNNING)
                          .values(heartbeat_at=utcnow()))
    return result.rowcount == 1


def record_chunk_rejects(
    conn: Connection, job_id: int, chunk_no: int, lines: tuple[int, int], rejected: Mapping[str, int],
    stored: Mapping[str, int], max_stored: int,
) -> int:
    """Write the chunk's counts; first trim its stored rejects to what the job's cap has left.

    Call it holding the job row (``hold_job``): the job's stored total cannot move meanwhile. ``lines`` is
    the chunk's first and last line number. Returns how many of the chunk's rejects stay stored.
    """
    x = ingest_rejects.c
    in_chunk = sa.and_(x.job_id == job_id, x.line_number.between(*lines))
    kept = sum(stored.values())
    room = max(max_stored - stored_rejects(conn, job_id), 0)
    if kept > room:  # chunks loading at once each had room when they started; the first to commit wins
        cut = conn.execute(sa.select(x.line_number).where(in_chunk).order_by(x.line_number)
                           .offset(room).limit(1)).scalar_one()
        conn.execute(ingest_rejects.delete().where(in_chunk, x.line_number >= cut))
        stored = {reason: int(n) for reason, n in conn.execute(
            sa.select(x.reason, sa.func.count()).where(in_chunk).group_by(x.reason))}
        kept = room
    rows = [dict(job_id=job_id, chunk_no=chunk_no, reason=reason, rejected=count, stored=stored.get(reason, 0))
            for reason, count in rejected.items() if count]
    if rows:
        conn.execute(ingest_reject_counts.insert(), rows)
    return kept


def reject_file(engine: Engine, job_id: int, message: str) -> bool:
    """Refuse a running job: status ``rejected_file`` with ``message``, its ``clientes`` rows deleted.

    False if the job was no longer running (another chunk refused it first, or it was finalized).
    """
    with engine.begin() as conn:
        j = ingest_jobs.c
        result = conn.execute(ingest_jobs.update().where(j.id == job_id, j.status == JobStatus.RUNNING)
                              .values(status=REJECTED_FILE, error=message[:4000], finished_at=utcnow()))
        if result.rowcount != 1:
            return False
        remove_rows(conn, job_id)
        return True


def remove_rows(conn: Connection, job_id: int) -> None:
    """Delete a refused job's rows from ``clientes`` (its rejects and counts stay)."""
    conn.execute(clientes.delete().where(clientes.c.JobId == job_id))
