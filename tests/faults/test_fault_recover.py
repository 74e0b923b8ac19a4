"""Recovery of an abandoned job: the flow-run process is killed (SIGKILL) in the middle of a chunk's bulk
load and nobody reruns the file. The recover-abandoned-jobs flow finds the job once its heartbeat is older
than the lease and resumes it: only the chunks not committed load, and the tables equal a clean single
run. Two recoveries racing on the same job load nothing twice (the lease lets one take it over). Real
child processes, the real PostgreSQL server.
"""

from __future__ import annotations

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
    wait_heartbeat_older_than,
)

from flows.recover import recover_abandoned_jobs

LEASE_ENV = "CLIENTES_JOB_LEASE_SECONDS"

pytestmark = [pytest.mark.postgres, pytest.mark.system]


def killed_mid_chunk(
    url: str, source: str, env: dict[str, str], log_dir: Path
) -> tuple[int, dict[int, tuple[str, int]]]:
    """Run the file in a child and SIGKILL it inside a chunk's COPY: the job it leaves, and its chunks."""
    with children() as started:
        run = Child(cli_args("run", source, "--db", url, "--quiet"), env, log_dir, "killed")
        started.append(run)
        kill_mid_chunk(run, url)
    ((job_id, status, *_),) = jobs_table(url)
    assert status == "running"
    before = chunk_attempts(url, job_id)
    assert 2 <= sum(s == "done" for s, _ in before.values()) < len(before)
    return job_id, before


@pytest.mark.timeout(240)
def test_recovery_flow_resumes_a_killed_run_loading_only_missing_chunks(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = new_pg()
    job_id, before = killed_mid_chunk(url, str(reference.path), child_env, tmp_path)

    # Inside the lease the dead run still looks alive: recovery leaves it alone.
    for key in ("CLIENTES_STORAGE_ROOT", "CLIENTES_CHUNK_SIZE", "CLIENTES_BLOCK_SIZE"):
        monkeypatch.setenv(key, child_env[key])
    monkeypatch.setenv("CLIENTES_DB_URL", url)
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", "")
    assert recover_abandoned_jobs(lease_seconds=600) == []
    assert chunk_attempts(url, job_id) == before

    # Past the lease, this process's recovery resumes it as a subflow.
    monkeypatch.setenv(LEASE_ENV, "0.5")
    wait_heartbeat_older_than(url, job_id, 1)
    (result,) = recover_abandoned_jobs(lease_seconds=0.5)
    assert (result.job_id, result.status, result.action, result.job_status) == (
        job_id, "running", "resumed", "completed_with_rejects")
    assert result.chunks_done == sum(s == "done" for s, _ in before.values())
    assert_loaded_exactly_once(url, job_id, before, reference)


@pytest.mark.timeout(300)
def test_two_recoveries_racing_on_one_job_load_it_once(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    job_id, before = killed_mid_chunk(url, str(reference.path), child_env, tmp_path)
    # A 5 s lease (the winner beats every 5/3 s): short enough for a test, long enough that a busy machine
    # does not delay the winner's beats past it and let the loser take the job over as well.
    wait_heartbeat_older_than(url, job_id, 6)
    with children() as started:
        recoveries = [Child(cli_args("recover", "--db", url, "--lease-seconds", "5"), child_env, tmp_path,
                            f"recover-{n}") for n in (1, 2)]
        started.extend(recoveries)
        for child in recoveries:
            assert child.wait(timeout=180) == 0, child.output()
    outputs = [child.stdout() for child in recoveries]
    # One resumed it; the other found it held by that run, already loaded by it (it saw the job abandoned
    # before the first took it over, and registered after the first finished), or no longer abandoned.
    assert sum("resumed, now completed_with_rejects" in out for out in outputs) == 1, outputs
    assert all("resumed" in out or "held by another run" in out or "already loaded" in out
               or "no abandoned jobs" in out for out in outputs), outputs
    assert_loaded_exactly_once(url, job_id, before, reference)
