"""Load one chunk in a lean child process that never imports Prefect, so the process doing the chunk
work stays small (a Prefect 3 flow-run process is ~270 MiB before it loads anything; the chunk work
alone peaks near 180 MiB with 1 MiB blocks: bench/results).

Opt-in with ``CLIENTES_CHUNK_ISOLATION=subprocess``. ``run_chunk`` pickles the task's arguments to the
child's stdin (the database URL never appears in argv or the environment) and unpickles its
``ChunkResult`` from stdout; the child is ``python -m clientes_ingest.chunk_worker``. Exactly-once is
the loader's: the child commits the chunk or rolls it back, and records its own failures.
Requires: the same interpreter and package as the parent.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

from clientes_ingest import loader
from clientes_ingest.chunks import ChunkSpec
from clientes_ingest.db import Database
from clientes_ingest.storage import Storage


class ChunkWorkerError(RuntimeError):
    """The chunk's child process failed; the message carries the end of its stderr."""


def run_chunk(
    db: Database, storage: Storage, job_id: int, uri: str, chunk: ChunkSpec, *, block_size: int, max_line_bytes: int
) -> loader.ChunkResult:
    """Load one chunk in a child process; raise ChunkWorkerError if it fails (or is killed, e.g. OOM)."""
    payload = pickle.dumps((db, storage, job_id, uri, chunk, block_size, max_line_bytes))
    proc = subprocess.run([sys.executable, "-m", "clientes_ingest.chunk_worker"], input=payload,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ChunkWorkerError(f"chunk {chunk.index} of job {job_id} failed in its worker process "
                               f"(exit {proc.returncode}): {' | '.join(tail) or 'no output'}")
    result: loader.ChunkResult = pickle.loads(proc.stdout)  # noqa: S301 - our own child's output
    return result


def main() -> None:
    db, storage, job_id, uri, chunk, block_size, max_line_bytes = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    result = loader.load_chunk(db, storage, job_id, uri, chunk, block_size=block_size,
                               max_line_bytes=max_line_bytes)
    sys.stdout.buffer.write(pickle.dumps(result))


if __name__ == "__main__":
    main()
