"""Recovery of an abandoned job: the flow-run process is killed (SIGKILL) in the middle of a chunk's bulk
load and nobody reruns the file. The recover-abandoned-jobs flow finds the job once its heartbeat is older
than the lease and resumes it: only the chunks not committed load, and the tables equal a clean single
run. Two recoveries racing on the same job load nothing twice (the lease lets one take it over). Real
child processes, the real PostgreSQL server.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import (
    Child,
    Reference,
    children,
    chunk_attempts,
    chunk_states,
    cli_args,
    copying_while_frozen,
    jobs_table,
    query,
    wait_until,
)
from support.loading import rejects, rows

from clientes_ingest.db import Database
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

        def mid_chunk() -> bool:
            return (chunk_states(url).get("done", 0) >= 2 and run.alive()
                    and bool(copying_while_frozen(run, url, lambda _: run.kill(signal.SIGKILL))))

        wait_until(mid_chunk, timeout=120, what="a chunk in the middle of its bulk load", child=run)
        assert run.wait(timeout=30) == -signal.SIGKILL
    ((job_id, status, *_),) = jobs_table(url)
    assert status == "running"
    before = chunk_attempts(url, job_id)
    assert 2 <= sum(s == "done" for s, _ in before.values()) < len(before)
    return job_id, before


def wait_heartbeat_older_than(url: str, job_id: int, seconds: float) -> None:
    wait_until(lambda: query(url, f"SELECT now() AT TIME ZONE 'UTC' - heartbeat_at > interval '{seconds} seconds' "
                                  "FROM ingest_jobs WHERE id = :j", j=job_id)[0][0],
               timeout=30, what="the dead run's heartbeat to age past the lease")


def assert_loaded_exactly_once(url: str, job_id: int, before: dict[int, tuple[str, int]],
                               reference: Reference) -> None:
    after = chunk_attempts(url, job_id)
    for chunk_no, (state, attempts) in before.items():
        assert after[chunk_no][0] == "done"
        # Committed chunks were not loaded again; the killed and unstarted ones were loaded once more.
        assert after[chunk_no][1] == (attempts if state == "done" else attempts + 1), chunk_no
    db = Database(url)
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects
    ((_, status, loaded, rejected, error),) = jobs_table(url)
    assert (status, loaded, rejected, error) == ("completed_with_rejects", len(reference.rows),
                                                 len(reference.rejects), None)


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
    assert (result["job_id"], result["status"], result["action"], result["job_status"]) == (
        job_id, "running", "resumed", "completed_with_rejects")
    assert result["chunks_done"] == sum(s == "done" for s, _ in before.values())
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
