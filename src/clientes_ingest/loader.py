"""Load one chunk: read its byte range, parse it block by block, bulk-write rows and rejects, and
commit them together with the chunk's status in ONE transaction.

A chunk that is already committed is skipped, so retries and reruns never duplicate; a failure rolls
the whole chunk back, so nothing is half-loaded. The chunk row is locked (``SELECT ... FOR UPDATE``)
while it loads, so two runs of the same chunk serialise and the second skips. Parsing runs one block
ahead of the database write in a helper thread (bounded queue), overlapping CPU and IO.
Requires: a ``Database`` whose schema exists and a ``Storage`` that holds the job's object.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from clientes_ingest import progress, rejection
from clientes_ingest.chunks import ChunkSpec, LineBlock, LongLine, iter_line_blocks
from clientes_ingest.db import Database, ingest_chunks, ingest_jobs, utcnow
from clientes_ingest.guard import RejectPolicy, Tally, describe, early_verdict
from clientes_ingest.parser import parse_block
from clientes_ingest.rejection import REJECTED_FILE
from clientes_ingest.results import ChunkResult, peak_rss_bytes
from clientes_ingest.rules import VALID_SCHEMA, ParsedBlock, empty_table, make_reject
from clientes_ingest.statuses import ChunkStatus
from clientes_ingest.storage import Storage
from clientes_ingest.writers import writer_for

T = TypeVar("T")


class ChunkIntegrityError(RuntimeError):
    """The chunk's bytes no longer match its plan (the stored object changed after planning)."""


class _Prefetch(Iterator[T]):
    """Run an iterator in a helper thread, at most ``depth`` items ahead; re-raise its errors."""

    _END = object()

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True, name="chunk-parse")
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterable[T]) -> None:
        start = time.thread_time()
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        finally:
            self.cpu_seconds = time.thread_time() - start

    def __next__(self) -> T:
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def parse_chunk(
    pieces: Iterable[bytes], chunk: ChunkSpec, *, block_size: int, max_line_bytes: int
) -> Iterator[tuple[ParsedBlock, int]]:
    """Parse a chunk's bytes into blocks of rows and rejects, with the bytes each block covered."""
    for item in iter_line_blocks(pieces, chunk.first_line, block_size=block_size,
                                 max_line_bytes=max_line_bytes, file_start=chunk.start == 0):
        if isinstance(item, LineBlock):
            yield parse_block(item.data, item.first_line, file_start=item.file_start), len(item.data)
        else:
            assert isinstance(item, LongLine)
            reject = make_reject(item.line_number, "line_too_long", item.prefix, item.length)
            yield ParsedBlock(valid=_EMPTY_VALID, rejects=reject, blank_lines=0, lines=1), item.bytes_covered


_EMPTY_VALID = empty_table(VALID_SCHEMA)


def lock_chunk(job_id: int, chunk_no: int) -> sa.Select[tuple[str]]:
    """Read a chunk's status and lock its row until the transaction ends (FOR UPDATE; UPDLOCK on SQL Server)."""
    c = ingest_chunks.c
    return (sa.select(c.status).where(c.job_id == job_id, c.chunk_no == chunk_no).with_for_update()
            .with_hint(ingest_chunks, "WITH (UPDLOCK, ROWLOCK)", "mssql"))


def _start_attempt(engine: Engine, job_id: int, chunk_no: int) -> str:
    """Count an attempt and beat the job's heartbeat: ``start``; ``done`` if the chunk is already committed,
    ``stopped`` if its job was refused (``rejected_file``) and nothing more of it may load."""
    c = ingest_chunks.c
    with engine.begin() as conn:
        status = conn.execute(sa.select(ingest_jobs.c.status).where(ingest_jobs.c.id == job_id)).scalar()
        if status == REJECTED_FILE:
            return "stopped"
        result = conn.execute(
            ingest_chunks.update().where(c.job_id == job_id, c.chunk_no == chunk_no, c.status != ChunkStatus.DONE)
            .values(attempts=c.attempts + 1, status=ChunkStatus.RUNNING, started_at=utcnow(), error=None)
        )
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(heartbeat_at=utcnow()))
        return "start" if result.rowcount == 1 else "done"


class _Stop(Exception):  # noqa: N818 - control flow inside load_chunk, never escapes it
    """The chunk must not commit: its job was refused (by this chunk's verdict, or another's)."""

    def __init__(self, verdict: str | None = None) -> None:
        super().__init__(verdict)
        self.verdict = verdict


def _reasons(rejects: Any) -> dict[str, int]:
    if rejects.num_rows == 0:
        return {}
    counts = pc.value_counts(rejects.column("reason"))
    return {str(item["values"].as_py()): int(item["counts"].as_py()) for item in counts}


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for reason, count in more.items():
        total[reason] = total.get(reason, 0) + count


def _record_failure(engine: Engine, job_id: int, chunk_no: int, error: str) -> None:
    c = ingest_chunks.c
    try:
        with engine.begin() as conn:
            conn.execute(ingest_chunks.update()
                         .where(c.job_id == job_id, c.chunk_no == chunk_no, c.status != ChunkStatus.DONE)
                         .values(status=ChunkStatus.FAILED, error=error[:4000], finished_at=utcnow()))
    except Exception:  # noqa: S110 - best effort: the database may be the thing that failed
        pass


def _skipped(engine: Engine, job_id: int, chunk: ChunkSpec) -> ChunkResult:
    """This chunk was committed by an earlier run: its stored counts (its bytes count as loaded)."""
    progress.emit("load", chunk.end - chunk.start)
    c = ingest_chunks.c
    with engine.connect() as conn:
        query = sa.select(ingest_chunks).where(c.job_id == job_id, c.chunk_no == chunk.index)
        row = conn.execute(query).mappings().one()
    return ChunkResult(job_id, chunk.index, True, chunk.line_count, row["rows_loaded"] or 0, row["rows_rejected"] or 0,
                       row["blank_lines"] or 0, 0.0, peak_rss_bytes(), 0.0)


def _stopped(engine: Engine, job_id: int, chunk: ChunkSpec, verdict: str | None) -> ChunkResult:
    """This chunk loaded nothing because its job is refused; refuse it here if this chunk's verdict did."""
    if verdict is not None:
        rejection.reject_file(engine, job_id, verdict)
    c = ingest_chunks.c
    with engine.begin() as conn:  # it may be loaded later only by a new job (--force), never by this one
        conn.execute(ingest_chunks.update()
                     .where(c.job_id == job_id, c.chunk_no == chunk.index, c.status != ChunkStatus.DONE)
                     .values(status=ChunkStatus.PENDING, finished_at=utcnow()))
    return ChunkResult(job_id, chunk.index, True, 0, 0, 0, 0, 0.0, peak_rss_bytes(), 0.0, stopped=True)


@dataclass
class _ChunkCounts:
    """What a chunk's blocks added up to so far (rows written, rejects counted and stored, per reason)."""

    rows: int = 0
    rejects: int = 0
    blank: int = 0
    lines: int = 0
    stored: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    stored_reasons: dict[str, int] = field(default_factory=dict)


def _load_blocks(conn: sa.Connection, writer: Any, job_id: int, chunk_no: int,
                 blocks: Iterable[tuple[ParsedBlock, int]], before: Tally, file_lines: int, room: int,
                 policy: RejectPolicy) -> _ChunkCounts:
    """Write each parsed block's rows and (up to ``room``) rejects in ``conn``; raise ``_Stop`` with the
    verdict as soon as the job's tally so far judges the file garbage (``guard.early_verdict``)."""
    n = _ChunkCounts()
    for parsed, nbytes in blocks:
        n.rows += writer.write_rows(conn, job_id, parsed.valid)
        block_reasons = _reasons(parsed.rejects)
        _add(n.reasons, block_reasons)
        keep = parsed.rejects if parsed.rejects.num_rows <= room - n.stored else parsed.rejects.slice(
            0, max(room - n.stored, 0))
        n.stored += writer.write_rejects(conn, job_id, chunk_no, keep)
        _add(n.stored_reasons, block_reasons if keep is parsed.rejects else _reasons(keep))
        n.rejects += parsed.rejects.num_rows
        n.blank += parsed.blank_lines
        n.lines += parsed.lines
        progress.emit("load", nbytes)
        seen = before.plus(Tally(n.lines, n.blank, n.rejects))
        if early_verdict(policy, seen, file_lines):
            committed = rejection.reason_counts(conn, job_id)
            _add(committed, n.reasons)
            raise _Stop(describe(policy, Tally(seen.lines, seen.blank, seen.rejected, committed),
                                 file_lines=file_lines, early=True))
    return n


def _verify_and_record_rejects(conn: sa.Connection, job_id: int, uri: str, chunk: ChunkSpec, counts: _ChunkCounts,
                    policy: RejectPolicy) -> None:
    """Check the chunk's lines against its plan, hold its job (``_Stop`` if it was refused or finalized
    meanwhile) and record the chunk's rejects per reason, in the chunk's transaction ``conn``."""
    if counts.lines != chunk.line_count:
        raise ChunkIntegrityError(
            f"chunk {chunk.index} of job {job_id} has {counts.lines} lines, its plan says {chunk.line_count}: "
            f"{uri} changed after it was planned; load it again as a new job (force=True)")
    if not rejection.hold_job(conn, job_id):
        raise _Stop()  # the job was refused (or finalized) while this chunk loaded
    span = (chunk.first_line, chunk.first_line + chunk.line_count - 1)
    rejection.record_chunk_rejects(conn, job_id, chunk.index, span, counts.reasons, counts.stored_reasons,
                                   policy.max_stored)


def load_chunk(
    db: Database,
    storage: Storage,
    job_id: int,
    uri: str,
    chunk: ChunkSpec,
    *,
    block_size: int,
    max_line_bytes: int,
    policy: RejectPolicy | None = None,
) -> ChunkResult:
    """Load one chunk exactly once (see the module docstring); re-raises any failure after recording it.

    ``policy`` (default ``RejectPolicy()``): after each block the job's tally so far (committed chunks plus
    this chunk) is judged by ``guard.early_verdict``; a file judged garbage is refused (``rejected_file``)
    and this chunk rolls back. At most ``policy.max_stored`` rejects of the job are stored; all are counted.
    """
    policy = policy or RejectPolicy()
    engine = db.engine
    started, cpu_start = time.perf_counter(), time.thread_time()
    attempt = _start_attempt(engine, job_id, chunk.index)
    if attempt == "stopped":
        return _stopped(engine, job_id, chunk, None)
    if attempt == "done":
        return _skipped(engine, job_id, chunk)
    writer = writer_for(db.dialect, db.writer)
    c = ingest_chunks.c
    blocks: _Prefetch[tuple[ParsedBlock, int]] | None = None
    try:
        with engine.begin() as conn:
            status = conn.execute(lock_chunk(job_id, chunk.index)).scalar_one()
            if status == ChunkStatus.DONE:  # another run committed it while we waited for the lock
                return _skipped(engine, job_id, chunk)
            before, file_lines, stored_before = rejection.committed_tally(conn, job_id)
            room = max(policy.max_stored - stored_before, 0)
            pieces = storage.iter_range(uri, chunk.start, chunk.end, block_size)
            blocks = _Prefetch(parse_chunk(pieces, chunk, block_size=block_size, max_line_bytes=max_line_bytes))
            counts = _load_blocks(conn, writer, job_id, chunk.index, blocks, before, file_lines, room, policy)
            blocks.close()  # joins the parse thread, so its CPU time is final
            _verify_and_record_rejects(conn, job_id, uri, chunk, counts, policy)
            duration = time.perf_counter() - started
            cpu = time.thread_time() - cpu_start + blocks.cpu_seconds
            rss = peak_rss_bytes()
            conn.execute(ingest_chunks.update().where(c.job_id == job_id, c.chunk_no == chunk.index).values(
                status=ChunkStatus.DONE, rows_loaded=counts.rows, rows_rejected=counts.rejects,
                blank_lines=counts.blank, duration_s=duration, peak_rss_bytes=rss, cpu_seconds=cpu,
                finished_at=utcnow(), error=None))
    except _Stop as stop:
        return _stopped(engine, job_id, chunk, stop.verdict)
    except BaseException as exc:
        _record_failure(engine, job_id, chunk.index, db.error_text(exc))
        raise
    finally:
        if blocks is not None:
            blocks.close()
    return ChunkResult(job_id, chunk.index, False, counts.lines, counts.rows, counts.rejects, counts.blank, duration,
                       rss, cpu)
