"""Fault: a rerun while the file's job is held by a run that is alive (here frozen with SIGSTOP, so it
stays alive and inside its lease for as long as the test needs). ``clientes-ingest run`` must not load
the file twice and must not claim success: it exits 4 naming the holder and since when; with ``--wait``
it waits for the holder and exits by the finished job's outcome. Real processes, real PostgreSQL.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import (
    Child,
    Reference,
    children,
    chunk_states,
    cli_args,
    frozen,
    jobs_table,
    query,
    wait_until,
)
from support.loading import rejects, rows

from clientes_ingest.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.system]


@pytest.mark.timeout(420)
def test_a_live_holder_gives_exit_4_and_wait_returns_the_finished_job(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    source = str(reference.path)
    with children() as started:
        first = Child(cli_args("run", source, "--db", url, "--quiet"), child_env, tmp_path, "first")
        started.append(first)
        wait_until(lambda: chunk_states(url).get("done", 0) >= 1, timeout=180, what="a first committed chunk",
                   child=first)
        with frozen(first):  # alive (same pid, same start time), not progressing
            held = Child(cli_args("run", source, "--db", url, "--quiet"), child_env, tmp_path, "held")
            started.append(held)
            assert held.wait(timeout=240) == 4, held.output()
            err = held.stderr()
            assert "is being loaded by another run that may be alive" in err, held.output()
            assert f"pid {first.pid} on host {socket.gethostname()}" in err and " since 20" in err, err
            assert "--wait" in err

            waiter = Child(cli_args("run", source, "--db", url, "--quiet", "--wait"), child_env, tmp_path, "waiter")
            started.append(waiter)
            wait_until(lambda: "waiting for it to finish" in waiter.stderr(), timeout=240,
                       what="the --wait run to find the job held", child=waiter)
            assert jobs_table(url)[0][1] == "running"  # nothing finished it while its holder is frozen
        assert first.wait(timeout=240) == 0, first.output()
        assert waiter.wait(timeout=120) == 0, waiter.output()
    assert "completed_with_rejects" in waiter.stdout(), waiter.output()

    ((job_id, status, loaded, rejected, _),) = jobs_table(url)  # one job, loaded by the first run only
    assert (status, loaded, rejected) == ("completed_with_rejects", len(reference.rows), len(reference.rejects))
    assert query(url, "SELECT max(attempts), min(attempts) FROM ingest_chunks WHERE job_id = :j", j=job_id) == [
        (1, 1)]
    assert query(url, "SELECT owner_pid, runs FROM ingest_jobs WHERE id = :j", j=job_id) == [(first.pid, 1)]
    db = Database(url)
    assert rows(db) == reference.rows and rejects(db) == reference.rejects
