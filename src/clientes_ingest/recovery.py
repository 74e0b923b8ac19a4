"""Find abandoned jobs: the ones no live run holds and nothing will resume on its own.

* ``running`` with a heartbeat older than the lease: its run died (pod killed, OOM, node lost) or
  could not finalize (database down at the end). A run of the same source with ``job_id`` takes it
  over and loads only the chunks not ``done`` (``jobs.register_job``).
* ``pending`` created longer than the lease ago: pre-registered (e.g. by the webhook) and its run
  never started (an in-process queue lost on shutdown). A run with ``job_id`` plans and loads it.

A ``failed`` job failed for a recorded reason and is not abandoned: it is left to a person.
Heartbeats are written by the pipeline (``utcnow``) and compared with this process's clock, as the
lease itself is; ``created_at`` is the database's ``CURRENT_TIMESTAMP`` and is compared with the
database's clock. Requires: an engine (a database without the schema has no jobs).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from clientes_ingest.db import ingest_chunks, ingest_jobs, utcnow
from clientes_ingest.statuses import ChunkStatus, JobStatus


class AbandonedJob(BaseModel):
    """A job to resume, with how long it has been idle (seconds since its last heartbeat, or since it
    was created for a pending job) and its committed chunks (``flow_results.RecoveryResult`` adds what
    a recovery did with it)."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    status: str
    source_uri: str
    file_name: str
    idle_seconds: float
    last_seen: dt.datetime
    runs: int
    chunks_done: int
    chunk_count: int

    @property
    def takeover_key(self) -> str:
        """Unique per job and per takeover: ``runs`` grows with every run that takes the job over, so a
        later abandonment of the same job gets a new key, while two recoveries of this one share it."""
        return f"recover-job-{self.job_id}-runs-{self.runs}-seen-{self.last_seen:%Y%m%dT%H%M%S%f}"


# The database's clock (``created_at`` is the database's CURRENT_TIMESTAMP).
DB_CLOCK = sa.select(sa.func.current_timestamp())


def abandoned_statements(
    now: dt.datetime, db_now: dt.datetime, lease_seconds: float, limit: int
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The reads of ``abandoned_jobs``: stale running jobs (by ``now``), old pending jobs (by ``db_now``)."""
    j = ingest_jobs.c
    columns = (j.id, j.status, j.source_uri, j.file_name, j.runs, j.heartbeat_at, j.created_at)
    lease = dt.timedelta(seconds=lease_seconds)
    # SQL Server has no NULLS FIRST; literals, not parameters, in its ORDER BY.
    never_beat = sa.case((j.heartbeat_at.is_(None), sa.literal_column("0")), else_=sa.literal_column("1"))
    running = (sa.select(*columns)
               .where(j.status == JobStatus.RUNNING, sa.or_(j.heartbeat_at.is_(None), j.heartbeat_at < now - lease))
               .order_by(never_beat, j.heartbeat_at, j.id).limit(limit))
    pending = (sa.select(*columns).where(j.status == JobStatus.PENDING, j.created_at < db_now - lease)
               .order_by(j.created_at, j.id).limit(limit))
    return running, pending


def abandoned_jobs(engine: Engine, lease_seconds: float, *, limit: int = 10) -> list[AbandonedJob]:
    """Running jobs whose heartbeat is older than ``lease_seconds`` and pending jobs created longer ago
    than that, the longest idle first, at most ``limit``."""
    if limit <= 0 or not sa.inspect(engine).has_table(ingest_jobs.name):
        return []
    now = utcnow()
    with engine.connect() as conn:
        db_now = conn.execute(DB_CLOCK).scalar_one().replace(tzinfo=None)
        running, pending = abandoned_statements(now, db_now, lease_seconds, limit)
        found: list[tuple[float, sa.RowMapping]] = []
        for row in [*conn.execute(running).mappings(), *conn.execute(pending).mappings()]:
            if row["heartbeat_at"] is not None:
                idle = (now - row["heartbeat_at"].replace(tzinfo=None)).total_seconds()
            else:
                idle = (db_now - row["created_at"].replace(tzinfo=None)).total_seconds()
            found.append((idle, row))
        found.sort(key=lambda item: (-item[0], item[1]["id"]))
        found = found[:limit]
        chunks = _chunk_counts(conn, [int(row["id"]) for _, row in found])
    return [
        AbandonedJob(job_id=int(row["id"]), status=row["status"], source_uri=row["source_uri"],
                     file_name=row["file_name"], idle_seconds=round(idle, 3),
                     last_seen=(row["heartbeat_at"] or row["created_at"]).replace(tzinfo=None),
                     runs=int(row["runs"]), chunks_done=chunks.get(int(row["id"]), (0, 0))[0],
                     chunk_count=chunks.get(int(row["id"]), (0, 0))[1])
        for idle, row in found
    ]


def _chunk_counts(conn: sa.Connection, job_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Chunks done and chunks planned, per job (one grouped read of the chunk table's key range)."""
    if not job_ids:
        return {}
    c = ingest_chunks.c
    rows = conn.execute(
        sa.select(c.job_id, sa.func.sum(sa.case((c.status == ChunkStatus.DONE, 1), else_=0)), sa.func.count())
        .where(c.job_id.in_(job_ids)).group_by(c.job_id)
    )
    return {int(job_id): (int(done or 0), int(total)) for job_id, done, total in rows}
