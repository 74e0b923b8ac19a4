"""The recover-abandoned-jobs flow under Prefect's test harness: abandoned jobs are resumed in-process
(only their missing chunks load), a live job is left alone, one job's failure does not stop the others,
and in deployment mode each job gets one flow run of the deployment per takeover (idempotency)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
)
from support.loading import load_file, partly_loaded, rejects, rows

from clientes_ingest import job_queries, jobs, recovery_tasks
from clientes_ingest.db import Database, ingest_chunks, ingest_jobs, utcnow
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage
from flows.ingest import ingest_clientes
from flows.recover import RecoveryFailed, recover_abandoned_jobs

pytestmark = pytest.mark.usefixtures("prefect_harness")

LEASE = 0.5  # seconds: a job left alone this long is abandoned


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_JOB_LEASE_SECONDS", str(LEASE))  # the lease of the runs that take jobs over
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", "")
    database = Database(db_url)
    database.ensure_schema()
    return database


def make_file(tmp_path: Path, name: str, seed: int) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    generate(path, lines=1500, seed=seed)
    return path


def dead_run(db: Database, path: Path, store: Path, loaded: int) -> tuple[int, list[int]]:
    """What a run killed after committing ``loaded`` chunks leaves: a 'running' job, the rest undone."""
    registration = partly_loaded(db, path, LocalStorage(store), chunk_size=8 * 1024, loaded=loaded, block_size=4096)
    return registration.job_id, [c.index for c in registration.pending[loaded:]]


def attempts(db: Database, job_id: int) -> dict[int, tuple[str, int]]:
    c = ingest_chunks.c
    with db.engine.connect() as conn:
        return {n: (s, a) for n, s, a in conn.execute(
            sa.select(c.chunk_no, c.status, c.attempts).where(c.job_id == job_id).order_by(c.chunk_no))}


def clean(path: Path, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    """Rows and rejects of a clean single load of ``path`` (a database of its own)."""
    db = Database(f"sqlite:///{tmp_path / f'clean-{path.stem}.db'}")
    job_id = load_file(db, path, tmp_path / "clean-store").job_id
    return rows(db, job_id), rejects(db, job_id)


def test_abandoned_running_and_pending_jobs_are_resumed_in_process(
    env: Database, tmp_path: Path
) -> None:
    running_file, pending_file = (make_file(tmp_path, "CLIENTES_IN_0425.dat", 1),
                                  make_file(tmp_path, "CLIENTES_IN_0525.dat", 2))
    # A webhook upload whose queued run was lost, then (over a second later: SQLite's created_at has
    # whole seconds) a run that died after committing two chunks.
    pending_id = jobs.create_pending_job(env.engine, str(pending_file), pending_file.name)
    time.sleep(1.2)
    running_id, undone = dead_run(env, running_file, tmp_path / "store", loaded=2)
    assert len(undone) >= 2
    before = attempts(env, running_id)
    time.sleep(2 * LEASE)

    state = recover_abandoned_jobs(lease_seconds=LEASE, return_state=True)
    results = state.result()

    # The longest idle first.
    assert [(r.job_id, r.status, r.action, r.job_status) for r in results] == [
        (pending_id, "pending", "resumed", "completed_with_rejects"),
        (running_id, "running", "resumed", "completed_with_rejects"),
    ]
    # Only the chunks the dead run had not committed were loaded again.
    after = attempts(env, running_id)
    assert {n for n, (s, a) in after.items() if a != before[n][1]} == set(undone)
    assert all(s == "done" for s, _ in after.values())
    assert (rows(env, running_id), rejects(env, running_id)) == clean(running_file, tmp_path)
    assert (rows(env, pending_id), rejects(env, pending_id)) == clean(pending_file, tmp_path)
    assert {job_queries.get_job(env.engine, j).status for j in (running_id, pending_id)} == {"completed_with_rejects"}

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[recovery_tasks.REPORT_KEY]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    table = json.loads(artifact.data)
    assert sorted((row["job_id"], row["action"]) for row in table) == sorted(
        [(running_id, "resumed"), (pending_id, "resumed")])

    # Nothing is abandoned any more: a second recovery does nothing.
    assert recover_abandoned_jobs(lease_seconds=LEASE) == []


def test_a_job_held_by_a_live_run_is_left_alone(env: Database, tmp_path: Path) -> None:
    path = make_file(tmp_path, "CLIENTES_IN_0425.dat", 3)
    job_id, _ = dead_run(env, path, tmp_path / "store", loaded=1)
    before = attempts(env, job_id)
    # Its run is alive: it beats well within a 60 s lease.
    assert recover_abandoned_jobs(lease_seconds=60) == []
    assert attempts(env, job_id) == before
    assert job_queries.get_job(env.engine, job_id).status == "running"


def test_one_failing_job_does_not_stop_the_others_and_fails_the_run(env: Database, tmp_path: Path) -> None:
    good = make_file(tmp_path, "CLIENTES_IN_0425.dat", 4)
    lost_id = jobs.create_pending_job(env.engine, str(tmp_path / "gone" / "CLIENTES_IN_0125.dat"),
                                      "CLIENTES_IN_0125.dat")
    time.sleep(1.2)  # the lost job is older: it comes first
    good_id = jobs.create_pending_job(env.engine, str(good), good.name)
    with env.engine.begin() as conn:  # both well past the lease, the lost one longer
        for job_id, age in ((lost_id, 120), (good_id, 60)):
            conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id)
                         .values(created_at=utcnow() - dt.timedelta(seconds=age)))

    with pytest.raises(RecoveryFailed, match=f"1 of 2 abandoned job\\(s\\) could not be resumed: {lost_id}") as err:
        recover_abandoned_jobs(lease_seconds=LEASE)

    by_id = {r.job_id: r for r in err.value.results}
    assert [r.job_id for r in err.value.results] == [lost_id, good_id]
    assert by_id[lost_id].action == "failed" and "no such file" in by_id[lost_id].error
    assert (by_id[good_id].action, by_id[good_id].job_status) == ("resumed", "completed_with_rejects")
    # The lost job's failure is recorded on it (a failed job is not retried by the next recovery).
    assert job_queries.get_job(env.engine, lost_id).status == "failed"
    assert recover_abandoned_jobs(lease_seconds=LEASE) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_deployment_mode_creates_one_run_per_takeover(env: Database, tmp_path: Path) -> None:
    deployment_id = ingest_clientes.to_deployment(name="recover-test").apply()
    path = make_file(tmp_path, "CLIENTES_IN_0425.dat", 5)
    job_id, _ = dead_run(env, path, tmp_path / "store", loaded=1)
    source = job_queries.get_job(env.engine, job_id).source_uri
    time.sleep(2 * LEASE)

    first = recover_abandoned_jobs(lease_seconds=LEASE, deployment="ingest-clientes/recover-test")
    second = recover_abandoned_jobs(lease_seconds=LEASE, deployment="ingest-clientes/recover-test")

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    (run,) = runs  # the second recovery found the first one's run instead of starting another
    assert run.parameters == {"source": source, "job_id": job_id}
    assert run.state is not None and run.state.is_scheduled()
    assert [(r.job_id, r.action, r.flow_run_id) for r in first] == [(job_id, "started", str(run.id))]
    assert [(r.job_id, r.action, r.flow_run_id) for r in second] == [(job_id, "already started",
                                                                               str(run.id))]

    # A later takeover of the same job (another run took it over and died too) gets a run of its own.
    with env.engine.begin() as conn:
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == job_id).values(runs=ingest_jobs.c.runs + 1))
    (third,) = recover_abandoned_jobs(lease_seconds=LEASE, deployment="ingest-clientes/recover-test")
    assert third.action == "started" and third.flow_run_id != str(run.id)
    with get_client(sync_client=True) as client:
        assert len(client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_deployment_mode_replaces_a_run_that_ended_without_taking_the_job_over(env: Database, tmp_path: Path) -> None:
    from prefect.states import Crashed

    deployment_id = ingest_clientes.to_deployment(name="recover-replace").apply()
    path = make_file(tmp_path, "CLIENTES_IN_0525.dat", 6)
    job_id, _ = dead_run(env, path, tmp_path / "store", loaded=1)
    time.sleep(2 * LEASE)
    deployment = "ingest-clientes/recover-replace"

    def crash(flow_run_id: str) -> None:  # its pod never started, say: the run ends, the job is untouched
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, Crashed(message="pod never started"), force=True)

    started: list[str] = []
    for _ in range(recovery_tasks.MAX_STARTS):
        (result,) = recover_abandoned_jobs(lease_seconds=LEASE, deployment=deployment)
        assert result.action == "started" and result.flow_run_id not in started, result
        started.append(result.flow_run_id)
        (again,) = recover_abandoned_jobs(lease_seconds=LEASE, deployment=deployment)
        assert (again.action, again.flow_run_id) == ("already started", started[-1])  # not ended yet
        crash(started[-1])

    with pytest.raises(RecoveryFailed, match=f"1 of 1 abandoned job\\(s\\) could not be resumed: {job_id}") as failed:
        recover_abandoned_jobs(lease_seconds=LEASE, deployment=deployment)  # gives up: a person looks at it
    ((job, action, flow_run_id, error),) = [(r.job_id, r.action, r.flow_run_id, r.error)
                                            for r in failed.value.results]
    assert (job, action, flow_run_id) == (job_id, "failed", started[-1])
    assert error.startswith(f"{recovery_tasks.MAX_STARTS} runs of {deployment} ended without taking the job over")
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert sorted(str(r.id) for r in runs) == sorted(started)
    assert {(r.parameters["job_id"], r.state.type.value if r.state else None) for r in runs} == {(job_id, "CRASHED")}
