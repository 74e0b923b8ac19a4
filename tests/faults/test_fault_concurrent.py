"""Fault 5: two runs of the same file started at the same time, as two real processes that share
nothing but the database (each has its own storage directory): the claim on the file's content in
``ingest_file_claims`` lets exactly one register and load; the other finds the job held by a live run
and exits 4 (not 0: the file is not loaded yet when it returns) without loading.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from faultkit import Child, Reference, children, cli_args, jobs_table, query, wait_until
from support.loading import rejects, rows

from clientes_ingest import cli, jobs, lease
from clientes_ingest.db import Database
from clientes_ingest.staging import stage_source
from clientes_ingest.storage import LocalStorage

pytestmark = [pytest.mark.postgres, pytest.mark.system]

LOADING_ELSEWHERE = "is being loaded by another run that may be alive"


@pytest.mark.timeout(180)
def test_two_concurrent_runs_of_one_file_load_it_once(
    reference: Reference, new_pg: Callable[[], str], child_env: dict[str, str], tmp_path: Path
) -> None:
    url = new_pg()
    Database(url).ensure_schema()  # both runs would create it; here the race is about the file, not DDL
    blocker = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with children() as started, blocker.connect() as hold:
        # Whichever run registers first blocks on its first COPY until one run has finished: the two runs
        # overlap for certain, however their start-ups differ.
        hold.exec_driver_sql("LOCK TABLE clientes IN SHARE MODE")
        for name in ("a", "b"):
            env = {**child_env, "CLIENTES_STORAGE_ROOT": str(tmp_path / f"store-{name}")}
            started.append(Child(cli_args("run", str(reference.path), "--db", url, "--quiet"), env, tmp_path, name))
        wait_until(lambda: not all(c.alive() for c in started), timeout=120, interval=0.1, what="one run to end")
        hold.rollback()
        for child in started:
            child.wait(timeout=120)
        outputs = [child.stderr() for child in started]
    blocker.dispose()

    loaders = [c for c, out in zip(started, outputs, strict=True) if LOADING_ELSEWHERE not in out]
    waiters = [c for c, out in zip(started, outputs, strict=True) if LOADING_ELSEWHERE in out]
    assert len(loaders) == 1 and len(waiters) == 1, "\n".join(c.output() for c in started)
    assert loaders[0].proc.returncode == 0, loaders[0].output()
    assert waiters[0].proc.returncode == cli.common.EXIT_HELD == 4, waiters[0].output()
    assert f"pid {loaders[0].pid} on host " in waiters[0].stderr(), waiters[0].output()

    ((job_id, status, loaded, rejected, _),) = jobs_table(url)  # one job, not two
    assert (status, loaded, rejected) == ("completed_with_rejects", len(reference.rows), len(reference.rejects))
    assert query(url, "SELECT count(*) FROM ingest_file_claims") == [(1,)]
    # Each chunk was loaded by one run, once.
    assert query(url, "SELECT max(attempts) FROM ingest_chunks WHERE job_id = :j", j=job_id) == [(1,)]
    db = Database(url)
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects


def test_a_run_that_finds_the_file_held_by_a_live_run_exits_4_naming_it(
    prefect_harness: None, pg_url: str, sample_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("CLIENTES_DB_URL", "CLIENTES_STORAGE_ROOT", "PREFECT_LOGGING_LEVEL"):
        monkeypatch.setenv(name, "")  # restored after the test: cmd_run sets them
    staged = stage_source(str(sample_file), LocalStorage(tmp_path / "other-run"), 1 << 20)
    # A live run (this very process, as its owner) holds this content.
    holder = jobs.register_job(Database(pg_url).engine, staged, owner=lease.this_process())
    code = cli.main(["run", str(sample_file), "--db", pg_url, "--quiet", "--storage-root", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert LOADING_ELSEWHERE in err
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in err and " since 20" in err
    assert "--wait" in err
    assert jobs_table(pg_url)[0][:2] == (holder.job_id, "running")
    assert code == 4
