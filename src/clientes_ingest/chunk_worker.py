"""Load chunks in lean child processes that never import Prefect, so the process doing the chunk work
stays small (a Prefect 3 flow-run process is ~240 MiB before it loads anything; the chunk work alone
peaks near 140-180 MiB with 1 MiB blocks: bench/results).

Opt-in with ``CLIENTES_CHUNK_ISOLATION=subprocess`` (the Kubernetes deployment sets it). The children
are a small pool of long-lived workers, ``python -m clientes_ingest.chunk_worker``: each takes one
chunk at a time, so the interpreter start and imports (~1 CPU-s) are paid once per worker, not once
per chunk, and a worker keeps its database connection between chunks. ``run_chunk`` borrows an idle
worker (or starts one), sends it the task's arguments pickled on its stdin (the database URL never
appears in argv or the environment) and reads back the pickled ``ChunkResult`` or error. A worker
acknowledges each request as soon as it has read it: one that dies after that, mid-chunk (OOM kill,
crash), is a clear ``ChunkWorkerError`` and is replaced by the next call; the task's retries do the rest.
Only a reused worker that died before it took the request (killed while idle) has the request sent again
to a new worker, since nothing of it ran. Exactly-once is the loader's: a worker commits the chunk or rolls it back, and
records its own failures. Workers end when the parent exits (their stdin closes), at once if the parent
is killed mid-chunk (the uncommitted chunk rolls back), or at ``shutdown_workers()``.
Requires: the same interpreter and package as the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import IO, Any

from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import Database
from clientes_ingest.guard import RejectPolicy
from clientes_ingest.results import ChunkResult
from clientes_ingest.storage import Storage

_HEADER = struct.Struct("!Q")  # each message: its length, then its pickle
_TAKEN = b""  # the worker's first answer to a request: it has read it and starts (never a pickle)
PARENT_GONE_EXIT = 70  # a worker whose parent died exits with this code, mid-chunk or idle
STDERR_TAIL_LINES = 3


class ChunkWorkerError(RuntimeError):
    """A chunk failed in its worker process; the message carries the error (or the end of its stderr)."""


def _write_message(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_message(stream: IO[bytes]) -> bytes | None:
    """The next message, or None at a clean end of stream."""
    header = stream.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise EOFError("truncated message header")
    (length,) = _HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        raise EOFError("truncated message")
    return payload


class _Worker:
    """One long-lived child process and its pipes; stderr goes to a temporary file (read on failure)."""

    def __init__(self, command: list[str]) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker; close() ends it
        self.last_stderr = ""
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, payload: bytes) -> tuple[bool, bytes | None]:
        """Send one request and wait for its reply: (taken, reply). ``taken`` once the worker acknowledged
        the request; ``reply`` None if the worker died before replying (before taking it, if not taken)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        taken = False
        try:
            _write_message(self.proc.stdin, payload)
            taken = _read_message(self.proc.stdout) == _TAKEN
            return taken, _read_message(self.proc.stdout) if taken else None
        except (BrokenPipeError, EOFError):
            return taken, None

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-STDERR_TAIL_LINES:])

    def close(self, timeout: float = 5.0) -> int:
        """Close its stdin (the worker exits when idle), wait, kill if it does not; its exit code."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.last_stderr = self.stderr_tail()
        self.stderr.close()
        return code


class WorkerPool:
    """Idle workers, reused one chunk at a time; as many exist as chunks were loading at once."""

    def __init__(self, command: list[str] | None = None) -> None:
        self._command = command
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        """The worker's command line; it names this process, which the worker exits with (see main)."""
        if self._command is not None:
            return self._command
        return [sys.executable, "-m", "clientes_ingest.chunk_worker", "--parent", str(os.getpid())]

    def _acquire(self) -> tuple[_Worker, bool]:
        """An idle worker that still runs (reused: True), else a new one."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker, True
                worker.close()
        return _Worker(self.command()), False

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def idle_pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._idle]

    def run(self, payload: bytes, what: str) -> Any:
        """Run one request on a worker; its unpickled reply, or ChunkWorkerError naming ``what``."""
        worker, reused = self._acquire()
        taken, reply = worker.call(payload)
        if not taken and reused:  # it died while idle (killed), before reading this request: a new worker
            worker.close(timeout=1.0)
            worker = _Worker(self.command())
            taken, reply = worker.call(payload)
        # Died after taking the request (OOM kill, crash mid-chunk): an error for the task's retries, never a
        # silent second run of the chunk here; and the worker is never reused.
        if reply is None:
            code = worker.close(timeout=1.0)
            raise ChunkWorkerError(f"{what} failed in its worker process (exit {code}): "
                                   f"{worker.last_stderr or 'no output'}")
        self._release(worker)
        status, value = pickle.loads(reply)  # noqa: S301 - our own child's output
        if status == "error":
            raise ChunkWorkerError(f"{what} failed in its worker process: {value}")
        return value

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_POOL = WorkerPool()
atexit.register(_POOL.shutdown)


def run_chunk(
    db: Database, storage: Storage, job_id: int, uri: str, chunk: ChunkSpec, *, block_size: int, max_line_bytes: int,
    policy: RejectPolicy | None = None,
) -> ChunkResult:
    """Load one chunk in a worker process; raise ChunkWorkerError if it fails (or its worker dies)."""
    payload = pickle.dumps((db, storage, job_id, uri, chunk, block_size, max_line_bytes, policy))
    result: ChunkResult = _POOL.run(payload, f"chunk {chunk.index} of job {job_id}")
    return result


def worker_pids() -> list[int]:
    """Process ids of the idle workers (for tests and diagnostics)."""
    return _POOL.idle_pids()


def shutdown_workers() -> None:
    """Stop the idle workers (they also stop by themselves when this process exits)."""
    _POOL.shutdown()


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The worker's loop: load each requested chunk, reply with its result or its error, until EOF."""
    from clientes_ingest import loader  # the child pays for pyarrow; the parent never imports it

    while (payload := _read_message(requests)) is not None:
        _write_message(replies, _TAKEN)  # from here on, a death of this process is this request's failure
        db, storage, job_id, uri, chunk, block_size, max_line_bytes, policy = pickle.loads(payload)  # noqa: S301
        try:
            result = loader.load_chunk(db, storage, job_id, uri, chunk, block_size=block_size,
                                       max_line_bytes=max_line_bytes, policy=policy)
            reply = pickle.dumps(("ok", result))
        except Exception as exc:  # recorded on the chunk by the loader; the parent raises it
            traceback.print_exc(file=sys.stderr)
            reply = pickle.dumps(("error", db.error_text(exc)))
        _write_message(replies, reply)


def exit_with_parent(parent: int, every_seconds: float = 1.0) -> threading.Thread:
    """Exit at once if ``parent`` dies (SIGKILL, OOM kill): an orphaned worker must not go on writing;
    its open chunk transaction is rolled back by the database when the connection drops."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_seconds)
        os._exit(PARENT_GONE_EXIT)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main() -> None:
    # The parent names itself: had it died before this line, getppid() would already name init.
    parent = int(sys.argv[sys.argv.index("--parent") + 1]) if "--parent" in sys.argv else os.getppid()
    exit_with_parent(parent)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # anything printed goes to stderr, never into the reply stream
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
