"""POST /runs against objects in the moto S3 server: one deployment run per object version (Prefect test
harness), and the run it creates loads the object in place."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow

from clientes_ingest import jobs
from clientes_ingest.db import Database
from clientes_ingest.devtools.generator import generate
from deployments.api import create_app
from deployments.launch import DeploymentLauncher
from flows.ingest import ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")

TOKEN = "runs-token-5b8e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = "incoming/CLIENTES_IN_0425.dat"


@pytest.fixture
def runs_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_bucket: str) -> Iterator[TestClient]:
    monkeypatch.setenv("CLIENTES_DB_URL", f"sqlite:///{tmp_path / 'runs.db'}")
    monkeypatch.setenv("CLIENTES_STORAGE", "s3")
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_API_TOKEN", TOKEN)
    monkeypatch.setenv("CLIENTES_CHUNK_SIZE", "48KiB")
    name = f"runs-{uuid.uuid4().hex[:8]}"
    ingest_clientes.to_deployment(name=name).apply()
    with TestClient(create_app(launcher=DeploymentLauncher(f"ingest-clientes/{name}"))) as client:
        yield client


def test_the_same_object_version_always_answers_the_same_run(
    runs_client: TestClient, aws_bucket: str, aws_s3_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=2500, seed=9)
    aws_s3_client.put_bucket_versioning(Bucket=aws_bucket, VersioningConfiguration={"Status": "Enabled"})
    aws_s3_client.upload_file(str(path), aws_bucket, KEY)
    head = aws_s3_client.head_object(Bucket=aws_bucket, Key=KEY)
    source = f"s3://{aws_bucket}/{KEY}"

    first = runs_client.post("/runs", json={"source": source}, headers=AUTH)
    assert first.status_code == 202, first.text
    again = runs_client.post("/runs", json={"source": source}, headers=AUTH)
    assert again.status_code == 200
    assert (again.json()["flowRunId"], again.json()["jobId"]) == (first.json()["flowRunId"], first.json()["jobId"])
    assert first.json()["created"] is True and again.json()["created"] is False
    assert first.json()["version"] == again.json()["version"]

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(first.json()["flowRunId"])
    # The run is pinned to the version the HEAD saw.
    assert run.parameters == {"source": source, "job_id": first.json()["jobId"], "chunk_size": str(48 * 1024),
                              "version_id": head["VersionId"], "etag": head["ETag"].strip('"')}
    assert run.idempotency_key and run.idempotency_key.startswith("api-run:")

    # The key is uploaded again (other content) before the run starts: the run still reads its version.
    aws_s3_client.put_object(Bucket=aws_bucket, Key=KEY, Body=b"Otra|Persona|1|Activo|1/2/2020|true|false\n")
    # Execute the scheduled run as a worker would: it reads the object in place and fills the job.
    result = run_flow(ingest_clientes, flow_run=run, parameters=run.parameters)
    assert result.job_id == first.json()["jobId"]
    pinned = jobs.job_source(Database(os.environ["CLIENTES_DB_URL"]).engine, result.job_id)
    assert pinned is not None and pinned.version is not None
    assert pinned.version.version_id == head["VersionId"]  # recorded: a resumed run reads this version too
    job = runs_client.get(f"/jobs/{first.json()['jobId']}", headers=AUTH).json()
    assert job["status"] == "completed_with_rejects" and job["totalLines"] == 2500
    assert job["rowsLoaded"] + job["rowsRejected"] + job["blankLines"] == 2500 and job["chunkCount"] > 3

    # A new version of the object (new ETag) is a new run.
    newer = runs_client.post("/runs", json={"source": source}, headers=AUTH)
    assert newer.status_code == 202
    assert newer.json()["flowRunId"] != first.json()["flowRunId"]
    assert newer.json()["jobId"] != first.json()["jobId"]
    metrics = runs_client.get("/metrics").text
    assert 'clientes_api_runs_started_total{endpoint="/runs",mode="deployment"} 2.0' in metrics
    assert 'clientes_api_runs_existing_total{endpoint="/runs"} 1.0' in metrics


def test_runs_refuse_what_is_not_an_object_of_the_storage(runs_client: TestClient, aws_bucket: str) -> None:
    missing = runs_client.post("/runs", json={"source": f"s3://{aws_bucket}/incoming/nope.dat"}, headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"].endswith("no such object")
    for source in ("s3://another-bucket/incoming/x.dat", "/etc/passwd", "file:///etc/passwd", "s3://", "x"):
        response = runs_client.post("/runs", json={"source": source}, headers=AUTH)
        assert response.status_code == 422, source
        assert response.json()["error"]
    invalid = runs_client.post("/runs", json={"src": "x"}, headers=AUTH)
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "source"]
    assert runs_client.get("/jobs/1", headers=AUTH).status_code == 404  # nothing was registered
