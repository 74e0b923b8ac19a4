"""Fault 1: the flow-run process is killed with SIGKILL in the middle of a chunk's bulk load. The job is
left 'running' with a fresh heartbeat; an immediate rerun finds its owner (same host, pid gone) dead,
takes the job over at once and loads only the chunks not committed: the final tables equal a clean
single run, with no duplicate and no gap. Real child processes, the real PostgreSQL server.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import (
    Child,
    Reference,
    assert_loaded_exactly_once,
    children,
    chunk_attempts,
    cli_args,
    jobs_table,
    kill_mid_chunk,
    query,
)
from pydantic import ValidationError
from support.loading import rejects, rows

from clientes_ingest import lease
from clientes_ingest.db import Database
from clientes_ingest.settings import load_settings

LEASE_ENV = "CLIENTES_JOB_LEASE_SECONDS"

pytestmark = [pytest.mark.postgres, pytest.mark.system]


def test_lease_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEASE_ENV, raising=False)
    assert load_settings().job_lease_seconds == lease.DEFAULT_LEASE_SECONDS
    monkeypatch.setenv(LEASE_ENV, "2.5")
    assert load_settings().job_lease_seconds == 2.5
    for bad in ("0", "-3", "soon"):
        monkeypatch.setenv(LEASE_ENV, bad)
        with pytest.raises(ValidationError, match="job_lease_seconds"):
            load_settings()


@pytest.mark.timeout(480)  # a hang guard: a 2-core box shared by many runs needs minutes
def test_sigkill_mid_chunk_then_rerun_loads_exactly_once(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    source = str(reference.path)
    with children() as started:
        first = Child(cli_args("run", source, "--db", url, "--quiet"), child_env, tmp_path, "first")
        started.append(first)

        kill_mid_chunk(first, url)  # some chunks committed, a chunk's transaction has already copied rows

        # What the dead run left: a 'running' job, committed chunks complete, the killed chunk absent.
        ((job_id, status, *_),) = jobs_table(url)
        assert status == "running"
        db = Database(url)
        done = query(url, "SELECT first_line, line_count FROM ingest_chunks WHERE job_id = :j AND status = 'done'",
                     j=job_id)
        assert 2 <= len(done) < len(chunk_attempts(url, job_id))
        assert "running" in {s for s, _ in chunk_attempts(url, job_id).values()}
        expected_rows = sorted(r for f, n in done for r in reference.rows_between(f, f + n - 1))
        expected_rejects = sorted(r for f, n in done for r in reference.rejects_between(f, f + n - 1))
        assert rows(db) == expected_rows and rejects(db) == expected_rejects
        before = chunk_attempts(url, job_id)

        # The job names its owner: the killed process, on this host. Its heartbeat is fresh (the lease is
        # 900 s), but that process is provably gone: an immediate rerun takes the job over at once and
        # loads only the missing chunks (it used to say "nothing to do" and exit 0).
        ((host, pid, runs),) = query(url, "SELECT owner_host, owner_pid, runs FROM ingest_jobs WHERE id = :j",
                                     j=job_id)
        assert (host, pid, runs) == (socket.gethostname(), first.pid, 1)
        assert LEASE_ENV not in child_env
        second = Child(cli_args("run", source, "--db", url, "--quiet"), child_env, tmp_path, "second")
        started.append(second)
        assert second.wait(timeout=180) == 0, second.output()
        assert query(url, "SELECT owner_pid, runs FROM ingest_jobs WHERE id = :j", j=job_id) == [(second.pid, 2)]

    assert_loaded_exactly_once(url, job_id, before, reference)
