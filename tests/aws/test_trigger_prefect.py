"""End to end under the Prefect test harness: upload -> S3 notification -> trigger -> one flow run with
the right source -> rows identical to a local run of the same file (moto server for S3 and SQS)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.flow_engine import run_flow
from support.loading import rejects, rows

from clientes_ingest.db import Database
from clientes_ingest.devtools.generator import generate
from clientes_ingest.events import parse_message
from deployments.launch import DeploymentLauncher, InlineLauncher
from deployments.trigger import TriggerService
from flows.ingest import ingest_clientes

pytestmark = pytest.mark.usefixtures("prefect_harness")

KEY = "incoming/CLIENTES_IN_0425.dat"


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=3000, seed=23)
    return path


@pytest.fixture
def flow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_resources: dict[str, str]) -> dict[str, str]:
    """Small chunks, so the S3 run reads several byte ranges; separate databases per run."""
    monkeypatch.setenv("CLIENTES_CHUNK_SIZE", "40KiB")
    monkeypatch.setenv("CLIENTES_BLOCK_SIZE", "16KiB")
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    return {"s3": f"sqlite:///{tmp_path / 's3.db'}", "local": f"sqlite:///{tmp_path / 'local.db'}"}


def local_reference(path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE", "local")
    result = ingest_clientes(source=str(path))
    assert result.status in {"completed", "completed_with_rejects"}
    return Database(db_url)


def upload_and_duplicate(s3: Any, sqs: Any, resources: dict[str, str], path: Path, copies: int) -> str:
    """Upload the file (S3 sends the notification) and deliver that same notification ``copies`` more times."""
    s3.upload_file(str(path), resources["bucket"], KEY)
    queue = resources["queue_url"]
    bodies: list[str] = []
    for _ in range(5):  # peek (visibility 0) past the s3:TestEvent of aws init
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages", []
        ):
            if not parse_message(message["Body"]).test_event:
                bodies.append(message["Body"])
        if bodies:
            break
    assert len(bodies) == 1, "the upload's notification did not arrive"
    for _ in range(copies):
        sqs.send_message(QueueUrl=queue, MessageBody=bodies[0])
    return f"s3://{resources['bucket']}/{KEY}"


def drain(service: TriggerService) -> list[str]:
    outcomes: list[str] = []
    empty = 0
    for _ in range(15):
        got = service.poll_once()
        outcomes += got
        empty = empty + 1 if not got else 0
        if empty == 2:
            break
    return outcomes


def test_upload_triggers_exactly_one_deployment_run_that_loads_like_local(
    clients_file: Path,
    flow_env: dict[str, str],
    aws_resources: dict[str, str],
    aws_s3_client: Any,
    aws_sqs_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"k8s-{uuid.uuid4().hex[:8]}"
    deployment_id = ingest_clientes.to_deployment(name=name).apply()
    uri = upload_and_duplicate(aws_s3_client, aws_sqs_client, aws_resources, clients_file, copies=2)

    service = TriggerService(
        aws_sqs_client,
        aws_resources["queue_url"],
        DeploymentLauncher(f"ingest-clientes/{name}"),
        allowed_buckets={aws_resources["bucket"]},
        wait_seconds=0,
        retry_delay_seconds=0,
    )
    outcomes = drain(service)
    assert outcomes.count("launched") == 3 and outcomes.count("ignored") == 1  # + the s3:TestEvent
    metrics = service.metrics.registry
    assert metrics.get_sample_value("clientes_trigger_runs_created_total") == 1
    assert metrics.get_sample_value("clientes_trigger_duplicates_total") == 2

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert len(runs) == 1
    (run,) = runs
    # Pinned to the version the event announced (moto's events carry the ETag, not a version id).
    etag = aws_s3_client.head_object(Bucket=aws_resources["bucket"], Key=uri.split("/", 3)[3])["ETag"].strip('"')
    assert run.parameters == {"source": uri, "etag": etag}
    assert run.idempotency_key and run.idempotency_key.startswith("s3-object-created:")

    # Execute the scheduled run here, as a worker would, reading the object in place with ranged GETs.
    monkeypatch.setenv("CLIENTES_DB_URL", flow_env["s3"])
    result = run_flow(ingest_clientes, flow_run=run, parameters=run.parameters)
    assert result.chunk_count > 3 and result.status == "completed_with_rejects"

    reference = local_reference(clients_file, flow_env["local"], monkeypatch)
    s3_db = Database(flow_env["s3"])
    assert rows(s3_db) == rows(reference) and len(rows(reference)) > 1000
    assert rejects(s3_db) == rejects(reference) and len(rejects(reference)) > 100


def test_in_process_mode_loads_the_uploaded_file_once(
    clients_file: Path,
    flow_env: dict[str, str],
    aws_resources: dict[str, str],
    aws_s3_client: Any,
    aws_sqs_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLIENTES_DB_URL", flow_env["s3"])
    upload_and_duplicate(aws_s3_client, aws_sqs_client, aws_resources, clients_file, copies=1)
    service = TriggerService(
        aws_sqs_client, aws_resources["queue_url"], InlineLauncher(), allowed_buckets={aws_resources["bucket"]},
        wait_seconds=0, retry_delay_seconds=0
    )
    outcomes = drain(service)
    assert outcomes.count("launched") == 2
    assert service.metrics.registry.get_sample_value("clientes_trigger_runs_created_total") == 1

    reference = local_reference(clients_file, flow_env["local"], monkeypatch)
    s3_db = Database(flow_env["s3"])
    assert rows(s3_db) == rows(reference)
    assert rejects(s3_db) == rejects(reference)
