"""Keep a running job's lease while its chunks wait for a database-writer slot or load.

A job whose heartbeat is older than the lease (``job_lease_seconds``) may be taken over by another run
(``jobs.register_job``). Chunks beat it when they start loading; a chunk that waits a long time for a
slot of the database-writers limit (docs/concurrency.md) would otherwise let a live run look dead, and
a second run would repeat its work. ``keep_alive`` beats from a daemon thread for as long as the
caller's block runs, and stops with it (or with its process: a dead run stops beating). A beat that
fails (database unreachable) is skipped; the next one tries again.

A job also records its owner (``Owner``: host, pid and the pid's start time). A run on the same host
can prove that owner dead without waiting for the lease (``process_is_dead``): its pid is gone, or the
pid now belongs to another process (a different start time: pids are reused). On another host nothing
is provable from here (the flow run's state is, see ``tasks``).
Requires: an engine whose schema exists; Linux ``/proc`` to read start times (elsewhere a live pid
counts as its owner).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from clientes_ingest.db import ingest_jobs, utcnow
from clientes_ingest.statuses import JobStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owner:
    """A process that may hold a job: its host name, pid and start time (``process_started``)."""

    host: str
    pid: int
    started: str | None


def process_started(pid: int) -> str | None:
    """A token that names this incarnation of ``pid``: the boot id and the process's start time in clock
    ticks since boot (``/proc/<pid>/stat`` field 22). None if the pid does not exist or /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": the comm may hold spaces
    return f"{boot}:{fields[19]}"


def this_process() -> Owner:
    """This process as a job owner."""
    return Owner(host=socket.gethostname(), pid=os.getpid(), started=process_started(os.getpid()))


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def process_is_dead(host: str | None, pid: int | None, started: str | None) -> bool:
    """True only if the owner is provably gone: it ran on this host, and its pid no longer exists or now
    names a process started at another time. False when unknown (another host, no pid recorded)."""
    if pid is None or host != socket.gethostname():
        return False
    if not _pid_exists(pid):
        return True
    now = process_started(pid)
    return started is not None and now is not None and now != started


def beat(engine: Engine, job_id: int) -> bool:
    """Set a running job's heartbeat to now; False if the job is not running (finished, failed, absent)."""
    with engine.begin() as conn:
        result = conn.execute(ingest_jobs.update()
                              .where(ingest_jobs.c.id == job_id, ingest_jobs.c.status == JobStatus.RUNNING)
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
