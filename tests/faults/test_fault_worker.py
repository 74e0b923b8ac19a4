"""Fault: with ``CLIENTES_CHUNK_ISOLATION=subprocess``, a real chunk worker process is SIGKILLed in the
middle of its COPY (as an OOM kill would). PostgreSQL rolls the worker's chunk transaction back when its
connection drops; the flow-run process sees the worker die (``ChunkWorkerError`` with the exit code),
the chunk task's retry loads that chunk on a fresh worker, and the run completes: the final tables equal
a clean single run. Real child processes, the real PostgreSQL server.

The kill waits for three committed chunks, so it mostly lands on a worker that already loaded a chunk
(workers are reused; two run at once), as most chunks of a real run do: the case the pool used to send
again silently to a new worker, without the error or the task's retry, which made this test fail in CI
whenever the first chunks were done before a COPY was seen (``test_chunk_isolation.py`` pins it down).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import Child, Reference, children, chunk_attempts, cli_args, jobs_table, kill_worker_mid_copy
from support.loading import rejects, rows

from clientes_ingest.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.system]


@pytest.mark.timeout(900)
def test_a_chunk_worker_killed_mid_copy_is_retried_and_the_run_loads_exactly_once(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    env = {**child_env, "CLIENTES_CHUNK_ISOLATION": "subprocess"}
    with children() as started:
        run = Child(cli_args("run", str(reference.path), "--db", url, "--quiet", "-v"), env, tmp_path, "run")
        started.append(run)
        killed = kill_worker_mid_copy(run, url, committed=3)
        assert killed.pid != run.pid
        assert run.wait(timeout=600) == 0, run.output()
        log = run.stdout() + run.stderr()

    # The parent saw its worker die and said so, for exactly one chunk.
    died = re.findall(r"chunk (\d+) of job \d+ failed in its worker process \(exit (?:-9|137)\)", log)
    assert len(set(died)) == 1, log
    killed_chunk = int(died[0])
    # Its first attempt (counted before the COPY, in a transaction of its own) was rolled back with the
    # killed session, so the task's retry loaded it: a second attempt. Had the kill come after its commit,
    # the retry would have found it done and counted nothing. Every other chunk: one attempt.
    ((job_id, status, loaded, rejected, error),) = jobs_table(url)
    attempts = chunk_attempts(url, job_id)
    assert attempts[killed_chunk] == ("done", 2), attempts
    assert all(a == ("done", 1) for n, a in attempts.items() if n != killed_chunk), attempts
    assert (status, loaded, rejected, error) == ("completed_with_rejects", len(reference.rows),
                                                 len(reference.rejects), None)
    db = Database(url)
    assert rows(db) == reference.rows  # exactly once: no duplicate, no gap, against a clean run
    assert rejects(db) == reference.rejects
