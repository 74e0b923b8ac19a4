"""Keep a running job's lease while its chunks wait for a database-writer slot or load.

A job whose heartbeat is older than the lease (``job_lease_seconds``) may be taken over by another run
(``jobs.register_job``). Chunks beat it when they start loading; a chunk that waits a long time for a
slot of the database-writers limit (docs/concurrency.md) would otherwise let a live run look dead, and
a second run would repeat its work. ``keep_alive`` beats from a daemon thread for as long as the
caller's block runs, and stops with it (or with its process: a dead run stops beating). A beat that
fails (database unreachable) is skipped; the next one tries again.
Requires: an engine whose schema exists.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from clientes_ingest.db import ingest_jobs, utcnow

logger = logging.getLogger(__name__)


def beat(engine: Engine, job_id: int) -> bool:
    """Set a running job's heartbeat to now; False if the job is not running (finished, failed, absent)."""
    with engine.begin() as conn:
        result = conn.execute(ingest_jobs.update()
                              .where(ingest_jobs.c.id == job_id, ingest_jobs.c.status == "running")
                              .values(heartbeat_at=utcnow()))
        return result.rowcount == 1


@contextmanager
def keep_alive(engine: Engine, job_id: int, every_seconds: float) -> Iterator[None]:
    """Beat ``job_id``'s heartbeat every ``every_seconds`` while the block runs."""
    if every_seconds <= 0:
        raise ValueError(f"every_seconds must be positive, got {every_seconds}")
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_seconds):
            try:
                beat(engine, job_id)
            except Exception as exc:  # the next beat tries again; the lease is minutes long
                logger.debug("heartbeat of job %d failed: %s", job_id, exc)

    thread = threading.Thread(target=run, daemon=True, name=f"job-{job_id}-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
