"""Faults 2 and 3: the database connection is terminated in the middle of a bulk load (the chunk task
retries and the chunk commits once), and the database becomes unreachable for longer than the chunk
retries (the job is marked failed with a clear error; after recovery a rerun loads only the missing
chunks). "Unreachable" is a TCP proxy between the pipeline and PostgreSQL that the test cuts and
restores; the test itself reads the database directly. Real child processes, the real PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import (
    PG_ADMIN_URL,
    Child,
    Reference,
    TcpProxy,
    children,
    chunk_attempts,
    chunk_states,
    cli_args,
    copying_while_frozen,
    jobs_table,
    query,
    via_port,
    wait_until,
)
from support.loading import rejects, rows

from clientes_ingest.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.system]


@pytest.mark.timeout(180)
def test_connection_terminated_mid_copy_is_retried_and_loads_exactly_once(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    with children() as started:
        run = Child(cli_args("run", str(reference.path), "--db", url, "--quiet"), child_env, tmp_path, "run")
        started.append(run)
        def terminate(pids: list[int]) -> None:
            assert query(PG_ADMIN_URL, "SELECT pg_terminate_backend(:pid)", pid=pids[0]) == [(True,)]

        # The run is frozen while its COPY is seen and its connection terminated: the chunk cannot commit
        # in between (without the freeze it sometimes did, and no chunk was retried).
        wait_until(lambda: chunk_states(url).get("done", 0) >= 1 and copying_while_frozen(run, url, terminate),
                   timeout=120, what="a chunk copying rows", child=run)
        assert run.wait(timeout=120) == 0, run.output()

    ((job_id, status, loaded, rejected, error),) = jobs_table(url)
    assert (status, loaded, rejected, error) == ("completed_with_rejects", len(reference.rows),
                                                 len(reference.rejects), None)
    attempts = sorted(a for _, a in chunk_attempts(url, job_id).values())
    assert attempts == [1] * (len(attempts) - 1) + [2]  # the terminated chunk, and only it, ran twice
    db = Database(url)
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects


def _outcomes(child: Child) -> tuple[int, int]:
    """(chunks loaded, chunks failed after their retries) as the run's log reports them so far."""
    log = child.stdout() + child.stderr()
    return len(re.findall(r"chunk \d+: (?:loaded|skipped)", log)), log.count("a chunk failed after its retries")


@pytest.mark.timeout(240)
def test_database_unreachable_past_the_retries_fails_the_job_then_a_rerun_loads_only_missing_chunks(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    env = {**child_env, "CLIENTES_CHUNK_SIZE": "1MiB", "CLIENTES_CHUNK_CONCURRENCY": "4",
           # Chunk retries after 0.3, 1.2 and 4.8 s: the outage below outlasts them; finalize_job has the
           # same delays, so the test has over 6 s to see the last chunk give up and bring the database
           # back before finalize gives up too.
           "CLIENTES_RETRY_BACKOFF_SECONDS": "0.3"}
    with TcpProxy(("127.0.0.1", 5432)) as proxy, children() as started:
        proxied = via_port(url, proxy.port)
        first = Child(cli_args("run", str(reference.path), "--db", proxied, "--quiet", "-v"), env, tmp_path, "first")
        started.append(first)
        wait_until(lambda: chunk_states(url).get("done", 0) >= 2, timeout=120, what="two committed chunks", child=first)
        proxy.cut()
        ((job_id, *_),) = jobs_table(url)
        chunk_count = len(chunk_attempts(url, job_id))
        # Keep the database away until every chunk task of the run has given up...
        wait_until(lambda: sum(_outcomes(first)) == chunk_count, timeout=120, interval=0.01,
                   what="every chunk to load or fail after its retries", child=first)
        loaded, failed_tasks = _outcomes(first)
        assert failed_tasks >= 1
        proxy.restore()  # ...then bring it back, so the run can record the job as failed.
        assert first.wait(timeout=60) == 1, first.output()

        done = query(url, "SELECT first_line, line_count FROM ingest_chunks WHERE job_id = :j AND status = 'done'",
                     j=job_id)
        # A chunk whose COMMIT reached the server just as the connection was cut is done although its task
        # saw an error (the acknowledgement was lost): its retry skips it. So count from the database.
        assert loaded <= len(done) <= loaded + failed_tasks - 1
        failed = chunk_count - len(done)
        err = first.stderr()
        assert f"error: job {job_id} failed: {failed} of {chunk_count} chunks not loaded" in err
        assert "rerun the same source to load the missing chunks" in err
        assert "Connection refused" in first.stdout() + err  # the cause, in the run's log
        ((_, status, _, _, error),) = jobs_table(url)
        assert status == "failed" and error.startswith(f"{failed} of {chunk_count} chunks not loaded")
        before = chunk_attempts(url, job_id)
        db = Database(url)
        assert rows(db) == sorted(r for f, n in done for r in reference.rows_between(f, f + n - 1))
        assert rejects(db) == sorted(r for f, n in done for r in reference.rejects_between(f, f + n - 1))

        second = Child(cli_args("run", str(reference.path), "--db", proxied, "--quiet"), child_env, tmp_path,
                       "second")
        started.append(second)
        assert second.wait(timeout=120) == 0, second.output()

    after = chunk_attempts(url, job_id)
    for chunk_no, (state, attempts) in before.items():
        assert after[chunk_no] == ("done", attempts if state == "done" else attempts + 1), chunk_no
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects
    ((_, status, *_),) = jobs_table(url)
    assert status == "completed_with_rejects"
