"""Fault: with ``CLIENTES_CHUNK_ISOLATION=subprocess``, a real chunk worker process is SIGKILLed in the
middle of its COPY (as an OOM kill would). PostgreSQL rolls the worker's chunk transaction back when its
connection drops; the flow-run process sees the worker die (``ChunkWorkerError`` with the exit code),
the chunk task's retry loads that chunk on a fresh worker, and the run completes: the final tables equal
a clean single run. Real child processes, the real PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import Child, Reference, children, chunk_attempts, cli_args, jobs_table, kill_worker_mid_copy
from support.loading import rejects, rows

from clientes_ingest.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.system]


@pytest.mark.timeout(600)
def test_a_chunk_worker_killed_mid_copy_is_retried_and_the_run_loads_exactly_once(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    env = {**child_env, "CLIENTES_CHUNK_ISOLATION": "subprocess"}
    with children() as started:
        run = Child(cli_args("run", str(reference.path), "--db", url, "--quiet", "-v"), env, tmp_path, "run")
        started.append(run)
        worker = kill_worker_mid_copy(run, url, committed=1)
        assert worker != run.pid
        assert run.wait(timeout=240) == 0, run.output()
        log = run.stdout() + run.stderr()

    # The parent saw its worker die and said so; the chunk took a second attempt on a new worker.
    assert "failed in its worker process (exit -9)" in log or "failed in its worker process (exit 137)" in log, log
    ((job_id, status, loaded, rejected, error),) = jobs_table(url)
    attempts = chunk_attempts(url, job_id)
    assert all(state == "done" for state, _ in attempts.values())
    assert any(n >= 2 for _, n in attempts.values()), attempts
    assert (status, loaded, rejected, error) == ("completed_with_rejects", len(reference.rows),
                                                 len(reference.rejects), None)
    db = Database(url)
    assert rows(db) == reference.rows  # exactly once: no duplicate, no gap, against a clean run
    assert rejects(db) == reference.rejects
