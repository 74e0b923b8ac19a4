"""deployments.launch under the Prefect test harness: in-process runs (bounded pool, idempotency keys in
memory and in Prefect), deployment runs through the API, and the mode choice."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey
from prefect.settings import PREFECT_API_URL, temporary_settings

from clientes_ingest import job_queries, jobs
from clientes_ingest.db import Database
from clientes_ingest.devtools.generator import generate
from clientes_ingest.resources import build_launcher, prefect_api_configured
from clientes_ingest.settings import Settings
from deployments import launch
from flows.ingest import ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'launch.db'}"
    monkeypatch.setenv("CLIENTES_DB_URL", url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_CHUNK_SIZE", "64KiB")
    database = Database(url)
    database.ensure_schema()
    return database


def runs_with_key(key: str) -> list[object]:
    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key]))))


def test_in_process_runs_execute_once_per_idempotency_key(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=1500, seed=3)
    job_id = jobs.create_pending_job(db.engine, str(path), path.name)
    key = f"test:{uuid.uuid4()}"
    launcher = launch.InProcessLauncher(workers=1)
    first = launcher.launch(str(path), job_id=job_id, idempotency_key=key)
    again = launcher.launch(str(path), job_id=job_id, idempotency_key=key)
    assert first.created and first.mode == "in-process" and first.job_id == job_id
    assert (again.flow_run_id, again.created, again.job_id) == (first.flow_run_id, False, job_id)
    assert launcher.find(key) == again
    result = launcher.wait(first.flow_run_id, timeout=120)
    assert result.job_id == job_id and result.status == "completed_with_rejects"
    assert job_queries.get_job(db.engine, job_id).total_lines == 1500

    # A restarted process forgets its keys; Prefect still knows the run by its idempotency key.
    restarted = launch.InProcessLauncher()
    replay = restarted.launch(str(path), job_id=job_id, idempotency_key=key)
    assert (replay.flow_run_id, replay.created, replay.job_id) == (first.flow_run_id, False, job_id)
    assert restarted.wait(replay.flow_run_id, timeout=1) is None  # nothing was executed again
    (run,) = runs_with_key(key)
    assert str(run.id) == first.flow_run_id and run.state.is_completed()
    assert run.parameters == {"source": str(path), "job_id": job_id}
    # Created like every run, through run_deployment, of the deployment the launcher applied.
    with get_client(sync_client=True) as client:
        assert client.read_deployment(run.deployment_id).name == "in-process"
    assert {"clientes-ingest", "in-process"} <= set(run.tags)


def test_a_failing_in_process_run_reports_its_job(db: Database, tmp_path: Path) -> None:
    missing = tmp_path / "CLIENTES_IN_0999.dat"
    job_id = jobs.create_pending_job(db.engine, str(missing), missing.name)
    seen: list[tuple[int | None, str]] = []
    launcher = launch.InProcessLauncher(on_error=lambda job, exc: seen.append((job, str(exc))))
    result = launcher.launch(str(missing), job_id=job_id, idempotency_key=None, chunk_size="1MB")
    with pytest.raises(Exception, match="no such file"):
        launcher.wait(result.flow_run_id, timeout=120)
    assert seen and seen[0][0] == job_id and "no such file" in seen[0][1]
    job = job_queries.get_job(db.engine, job_id)
    assert job.status == "failed" and "no such file" in (job.error or "")


def test_launch_ingest_creates_one_deployment_run_per_key(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    deployment_id = ingest_clientes.to_deployment(name=name).apply()
    monkeypatch.setenv("CLIENTES_LAUNCH_MODE", "deployment")
    monkeypatch.setenv("CLIENTES_DEPLOYMENT", f"ingest-clientes/{name}")
    key = f"test:{uuid.uuid4()}"
    first = launch.launch_ingest("s3://b/incoming/x.dat", job_id=7, idempotency_key=key, chunk_size="1MB")
    again = launch.launch_ingest("s3://b/incoming/x.dat", job_id=8, idempotency_key=key)
    assert first.created and first.mode == "deployment" and first.job_id == 7
    assert (again.flow_run_id, again.created, again.job_id) == (first.flow_run_id, False, 7)
    (run,) = runs_with_key(key)
    assert run.deployment_id == deployment_id and run.state.is_scheduled()
    assert run.parameters == {"source": "s3://b/incoming/x.dat", "job_id": 7, "chunk_size": "1MB"}
    found = launch.DeploymentLauncher(f"ingest-clientes/{name}").find(key)
    assert found is not None and (found.flow_run_id, found.created, found.job_id) == (first.flow_run_id, False, 7)
    assert launch.DeploymentLauncher(f"ingest-clientes/{name}").find("unknown-key") is None


def test_a_missing_deployment_is_a_clear_launch_error() -> None:
    launcher = launch.DeploymentLauncher("ingest-clientes/does-not-exist")
    with pytest.raises(launch.LaunchError, match="deployment ingest-clientes/does-not-exist not found"):
        launcher.prepare()  # at start-up: /ready then reports it
    with pytest.raises(launch.LaunchError, match="deployment ingest-clientes/does-not-exist not found"):
        launcher.launch("s3://b/k", job_id=None, idempotency_key=None)


def test_auto_mode_follows_the_prefect_api_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(build_launcher(Settings()), launch.DeploymentLauncher)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not prefect_api_configured()
        in_process = build_launcher(Settings())
        assert isinstance(in_process, launch.InProcessLauncher)
        in_process.shutdown()
    monkeypatch.setenv("CLIENTES_LAUNCH_MODE", "in-process")
    forced = build_launcher(Settings())
    assert isinstance(forced, launch.InProcessLauncher)
    forced.shutdown()

