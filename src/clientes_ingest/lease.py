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
The job row records who holds it (``Holder``); ``take_over`` moves a job to this run (an optimistic lock
on its ``runs`` count), and ``wait_for_job`` waits while a live holder finishes.
Requires: an engine whose schema exists; Linux ``/proc`` to read start times (elsewhere a live pid
counts as its owner).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from clientes_ingest.db import ingest_jobs, utcnow
from clientes_ingest.job_queries import JobSummary, get_job, job_row
from clientes_ingest.statuses import JobStatus

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 900


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


@dataclass(frozen=True)
class Holder:
    """Who holds a running job: its process (host, pid, pid start time), flow run, since when, last beat."""

    job_id: int
    runs: int
    host: str | None
    pid: int | None
    started: str | None
    flow_run_id: str | None
    since: dt.datetime | None
    heartbeat_at: dt.datetime | None

    def describe(self) -> str:
        """``pid 42 on host h (flow run X) since 2026-...Z, last heartbeat 3s ago`` (no personal data)."""
        who = f"pid {self.pid} on host {self.host}" if self.pid is not None else "a run"
        if self.flow_run_id:
            who += f" (flow run {self.flow_run_id})"
        if self.since is not None:
            who += f" since {self.since:%Y-%m-%d %H:%M:%S} UTC"
        if self.heartbeat_at is not None:
            who += f", last heartbeat {(utcnow() - self.heartbeat_at.replace(tzinfo=None)).total_seconds():.0f}s ago"
        return who


def holder_of(job: sa.RowMapping) -> Holder:
    """The run that holds (or last held) a job, as its row records it."""
    return Holder(job_id=int(job["id"]), runs=int(job["runs"]), host=job["owner_host"], pid=job["owner_pid"],
                  started=job["owner_started"], flow_run_id=job["flow_run_id"], since=job["owner_since"],
                  heartbeat_at=job["heartbeat_at"])


def owned_by(owner: Owner | None, flow_run_id: str | None) -> dict[str, Any]:
    """The owner columns of a job this run now holds."""
    return dict(flow_run_id=flow_run_id, owner_host=owner.host if owner else None,
                owner_pid=owner.pid if owner else None, owner_started=owner.started if owner else None,
                owner_since=utcnow())


def is_live(job: sa.RowMapping, lease_seconds: float) -> bool:
    """Whether another run holds the job: running, and heart-beating within the lease."""
    if job["status"] != JobStatus.RUNNING or job["heartbeat_at"] is None:
        return False
    age = (utcnow() - job["heartbeat_at"].replace(tzinfo=None)).total_seconds()
    return age < lease_seconds


def take_over(conn: Connection, job: sa.RowMapping, flow_run_id: str | None, owner: Owner | None) -> bool:
    """Claim an unfinished job for this run; False if another run took it first (optimistic lock)."""
    result = conn.execute(
        ingest_jobs.update().where(ingest_jobs.c.id == job["id"], ingest_jobs.c.runs == job["runs"])
        .values(status=JobStatus.RUNNING, runs=job["runs"] + 1, heartbeat_at=utcnow(), error=None, finished_at=None,
                **owned_by(owner, flow_run_id))
    )
    return result.rowcount == 1


def holder(engine: Engine, job_id: int) -> Holder | None:
    """Who holds ``job_id`` if it is running (None if it is not, or does not exist)."""
    with engine.connect() as conn:
        job = job_row(conn, job_id)
    return holder_of(job) if job is not None and job["status"] == JobStatus.RUNNING else None


def wait_for_job(
    engine: Engine, job_id: int, *, lease_seconds: float, holder_is_dead: Callable[[Holder], bool],
    poll_seconds: float = 2.0, sleep: Callable[[float], None] = time.sleep,
) -> JobSummary | None:
    """Wait while another run holds ``job_id``: its summary once it is no longer running, or None as soon
    as its holder is provably dead or stopped heart-beating for ``lease_seconds`` (take it over then)."""
    while True:
        current = holder(engine, job_id)
        if current is None:
            return get_job(engine, job_id)
        last_beat = current.heartbeat_at
        if last_beat is None or (utcnow() - last_beat.replace(tzinfo=None)).total_seconds() >= lease_seconds \
                or holder_is_dead(current):
            return None
        sleep(poll_seconds)
