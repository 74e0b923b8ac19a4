"""Tools of the fault tests: a TCP proxy that can cut a service off, the ``clientes-ingest`` command
run as a real child process (always killed on exit), polling helpers and direct reads of the
pipeline's tables on PostgreSQL.

Requires: PostgreSQL on 127.0.0.1:5432 (trust auth) and the installed package (console modules).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from support.loading import rejects, rows

from clientes_ingest.db import Database
from clientes_ingest.devtools.supervise import free_port

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get("CLIENTES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.02, what: str = "condition",
    child: Child | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds, or as
    soon as ``child`` (the process expected to make it true) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if child is not None and not child.alive():
            raise AssertionError(f"{child.name} exited ({child.proc.returncode}) before {what}\n{child.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Reference:
    """The tables a clean single run of ``path`` produces (without job ids)."""

    path: Path
    rows: list[tuple[Any, ...]]
    rejects: list[tuple[Any, ...]]

    def rows_between(self, first: int, last: int) -> list[tuple[Any, ...]]:
        return [r for r in self.rows if first <= r[0] <= last]

    def rejects_between(self, first: int, last: int) -> list[tuple[Any, ...]]:
        return [r for r in self.rejects if first <= r[0] <= last]


# ------------------------------------------------------------------------------------------ proxy


def _hard_close(sock: socket.socket) -> None:
    # SO_LINGER 0: close with a RST, as a dropped network path or a crashed peer looks to the client.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of ``upstream``; ``cut()`` makes the service unreachable
    (open connections are reset, new ones refused), ``restore()`` brings it back on the same port.

    ``respond(raw)`` keeps accepting but answers every connection with ``raw`` (e.g. an HTTP error)
    instead of relaying it. ``accepted`` counts connections accepted while relaying.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.accepted = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._half_closed: dict[frozenset[socket.socket], bool] = {}
        self._listener: socket.socket | None = None
        self._canned: bytes | None = None
        self._closed = False
        self.restore()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Relay again (listening on the same port)."""
        with self._lock:
            self._canned = None
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True, name="proxy-accept").start()

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            _hard_close(listener)
        for conn in conns:
            _hard_close(conn)

    def respond(self, raw: bytes) -> None:
        """Answer every new connection with ``raw`` and close it; open connections are reset."""
        self.restore()
        with self._lock:
            self._canned = raw
            conns, self._conns = self._conns, set()
        for conn in conns:
            _hard_close(conn)

    def close(self) -> None:
        self._closed = True
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            with self._lock:
                canned = self._canned
            if canned is not None:
                threading.Thread(target=self._answer, args=(client, canned), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while we were connecting
                    _hard_close(client)
                    _hard_close(server)
                    return
                self._conns.update((client, server))
                self.accepted += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True, name="proxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            # A clean end of one direction is passed on as a half-close: the peer still reads what is
            # in flight (a reset here would discard the end of an HTTP response).
            dst.shutdown(socket.SHUT_WR)
            with self._lock:
                finished = self._half_closed.pop(frozenset((src, dst)), False)
                if not finished:
                    self._half_closed[frozenset((src, dst))] = True
            if not finished:
                return
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            src.close()
            dst.close()
        except OSError:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _hard_close(src)
            _hard_close(dst)

    @staticmethod
    def _answer(client: socket.socket, canned: bytes) -> None:
        try:
            client.settimeout(5)
            buffer = b""
            while b"\r\n\r\n" not in buffer:  # the request head; a ranged GET has no body
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
            client.sendall(canned)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()


def http_error(status: int, code: str, message: str) -> bytes:
    """A complete S3-style XML error response."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>fault-test</RequestId></Error>").encode()
    reason = {403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    return head + body


# ------------------------------------------------------------------------------------- processes


class Child:
    """A child process in its own process group, output to files; killed (group-wide) on exit."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(list(args), env=env, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the run and anything it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"{self.name} did not finish within {timeout}s\n{self.output()}") from None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- {self.name} stdout\n{self.stdout()[-4000:]}\n--- {self.name} stderr\n{self.stderr()[-4000:]}"

    def close(self) -> None:
        if self.alive():
            self.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Collects children started in the block and kills every one still running when it ends."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.close()


def cli_args(*args: str) -> list[str]:
    """The ``clientes-ingest`` command with this interpreter (no dependency on PATH)."""
    return [sys.executable, "-m", "clientes_ingest.cli", *args]


# -------------------------------------------------------------------------------------- postgres


@contextlib.contextmanager
def private_databases() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases; all are dropped when the block ends."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def create() -> str:
        name = f"clientes_fault_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        names.append(name)
        return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        from clientes_ingest.db import Database

        for name in names:
            Database(sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)).dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def via_port(url: str, port: int) -> str:
    """The same database URL, reached through another port (a proxy)."""
    return sa.engine.make_url(url).set(port=port).render_as_string(hide_password=False)


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """One read on a short-lived connection of its own (never the pipeline's pool)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    except sa.exc.ProgrammingError:
        return []  # tables not created yet by the run
    finally:
        engine.dispose()


def chunk_states(url: str) -> dict[str, int]:
    """Number of chunks per status, over every job."""
    return {status: int(n) for status, n in query(url, "SELECT status, count(*) FROM ingest_chunks GROUP BY status")}


def copying_backends(url: str) -> list[int]:
    """PIDs of this database's backends inside a transaction whose latest statement is a COPY (a chunk
    in the middle of its bulk load)."""
    dbname = sa.engine.make_url(url).database
    return [int(r[0]) for r in query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid() "
        "AND xact_start IS NOT NULL AND query ILIKE 'COPY %'",
        db=dbname,
    )]


@contextlib.contextmanager
def frozen(child: Child) -> Iterator[None]:
    """The child's process group stopped (SIGSTOP) for the block and continued after it. While it is
    stopped its database sessions cannot move on: a backend seen inside a COPY stays there until the
    block ends, so acting on it is not a race with the chunk's commit."""
    child.kill(signal.SIGSTOP)
    try:
        yield
    finally:
        child.kill(signal.SIGCONT)


def copying_while_frozen(child: Child, url: str, act: Callable[[list[int]], None]) -> list[int]:
    """If a chunk of ``child`` is inside its bulk load, call ``act`` with the copying backends while the
    child is frozen (so that chunk cannot commit first) and return them; otherwise return []."""
    if not copying_backends(url):  # cheap check first: freeze only when a COPY is likely under way
        return []
    with frozen(child):
        pids = copying_backends(url)
        if pids:
            act(pids)
        return pids


def kill_mid_chunk(run: Child, url: str, *, committed: int = 2) -> None:
    """SIGKILL ``run`` inside a chunk's bulk load, once ``committed`` chunks are done: it is frozen while the
    COPY is seen, so that chunk cannot commit between the check and the kill."""

    def mid_chunk() -> bool:
        return (chunk_states(url).get("done", 0) >= committed and run.alive()
                and bool(copying_while_frozen(run, url, lambda _: run.kill(signal.SIGKILL))))

    wait_until(mid_chunk, timeout=120, what="a chunk in the middle of its bulk load", child=run)
    assert run.wait(timeout=30) == -signal.SIGKILL


_COPYING = ("SELECT client_port, pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid() "
            "AND xact_start IS NOT NULL AND query ILIKE 'COPY %' AND client_port IS NOT NULL")


def chunk_workers(run: Child) -> list[Any]:
    """The chunk worker processes (``python -m clientes_ingest.chunk_worker``) under ``run``."""
    import psutil

    found = []
    for proc in psutil.Process(run.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "clientes_ingest.chunk_worker" in proc.cmdline():
                found.append(proc)
    return found


def wait_stopped(run: Child, timeout: float = 30.0) -> None:
    """Wait until ``run`` and every process under it is really stopped: SIGSTOP is delivered asynchronously,
    and a look at their database sessions means something only once none of them can still send."""
    import psutil

    halted = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}

    def all_stopped() -> bool:
        try:
            top = psutil.Process(run.pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return True
        states = set()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                states.add(proc.status())
        return states <= halted

    wait_until(all_stopped, timeout=timeout, interval=0.005, what=f"every process of {run.name} to stop")


@dataclass(frozen=True)
class KilledWorker:
    """A chunk worker killed by ``kill_worker_mid_copy``."""

    pid: int  # the chunk worker process
    backend_pid: int  # its PostgreSQL session, seen inside the COPY and gone before the run went on


def kill_worker_mid_copy(run: Child, url: str, *, committed: int = 2, timeout: float = 300) -> KilledWorker:
    """SIGKILL the chunk worker process whose database session is inside a COPY, once ``committed`` chunks
    are done. The run (the worker included) is frozen and seen stopped before the sessions are read, so
    the chunk cannot commit between the check and the kill (after its COPY a chunk still runs statements
    before COMMIT, one round trip each); the killed session must be gone, its transaction rolled back,
    before the run is continued (its parent must then notice the death and retry)."""
    import psutil

    dbname = sa.engine.make_url(url).database
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    killed: list[KilledWorker] = []
    # One autocommit session for the polling: each statement sees fresh statistics, no connect per look.
    with engine.connect() as conn:

        def copying() -> dict[int, int]:
            return {int(port): int(pid) for port, pid in conn.execute(sa.text(_COPYING), {"db": dbname})}

        def session_exists(backend: int) -> bool:
            alive = conn.execute(sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": backend})
            return alive.first() is not None

        def done() -> int:
            try:
                counted = conn.execute(sa.text("SELECT count(*) FROM ingest_chunks WHERE status = 'done'"))
                return int(counted.scalar_one())
            except sa.exc.ProgrammingError:
                return 0  # tables not created yet by the run

        def mid_copy() -> bool:
            if done() < committed or not run.alive() or not copying():
                return False
            with frozen(run):
                wait_stopped(run)
                ports = copying()
                for worker in chunk_workers(run):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        port = next((c.laddr.port for c in worker.net_connections(kind="tcp")
                                     if c.laddr and c.laddr.port in ports), None)
                        if port is None:
                            continue
                        # No wait: the killed worker stays a zombie until its frozen parent reaps it.
                        worker.kill()
                        backend = ports[port]
                        wait_until(lambda: not session_exists(backend), timeout=60,  # noqa: B023 - called here
                                   what=f"the killed worker's session {backend} to end")
                        killed.append(KilledWorker(worker.pid, backend))
                        return True
            return False

        wait_until(mid_copy, timeout=timeout, interval=0.005, what="a chunk worker in the middle of its COPY",
                   child=run)
    engine.dispose()
    return killed[0]


def wait_heartbeat_older_than(url: str, job_id: int, seconds: float) -> None:
    """Wait until the job's heartbeat (written by a run now dead) is older than ``seconds``."""
    wait_until(lambda: query(url, f"SELECT now() AT TIME ZONE 'UTC' - heartbeat_at > interval '{seconds} seconds' "
                                  "FROM ingest_jobs WHERE id = :j", j=job_id)[0][0],
               timeout=30, what="the dead run's heartbeat to age past the lease")


def assert_loaded_exactly_once(url: str, job_id: int, before: dict[int, tuple[str, int]],
                               reference: Reference) -> None:
    """After a resume: committed chunks were not loaded again, the others once more, and the tables and
    the job equal a clean single run."""
    after = chunk_attempts(url, job_id)
    for chunk_no, (state, attempts) in before.items():
        assert after[chunk_no][0] == "done"
        assert after[chunk_no][1] == (attempts if state == "done" else attempts + 1), chunk_no
    db = Database(url)
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects
    ((_, status, loaded, rejected, error),) = jobs_table(url)
    assert (status, loaded, rejected, error) == ("completed_with_rejects", len(reference.rows),
                                                 len(reference.rejects), None)


def jobs_table(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT id, status, rows_loaded, rows_rejected, error FROM ingest_jobs ORDER BY id")


def chunk_attempts(url: str, job_id: int) -> dict[int, tuple[str, int]]:
    rows = query(url, "SELECT chunk_no, status, attempts FROM ingest_chunks WHERE job_id = :j ORDER BY chunk_no",
                 j=job_id)
    return {int(n): (str(s), int(a)) for n, s, a in rows}
