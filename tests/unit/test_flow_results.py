"""The flows' results are typed models (statuses as enums) that Prefect's serializers persist and read
back unchanged."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pytest
from prefect.serializers import JSONSerializer, PickleSerializer, Serializer
from pydantic import BaseModel

from clientes_ingest.flow_results import IngestResult, PurgeResult, RecoveryResult
from clientes_ingest.job_queries import JobSummary
from clientes_ingest.recovery import AbandonedJob
from clientes_ingest.retention import PurgedJob
from clientes_ingest.statuses import Action, JobStatus, RecoveryAction

FINISHED = dt.datetime(2026, 3, 1, 8, 30)


def job_summary() -> JobSummary:
    return JobSummary(job_id=4, status="completed_with_rejects", source_uri="s3://b/in/CLIENTES_IN_0425.dat",
                      file_name="CLIENTES_IN_0425.dat", size_bytes=1200, sha256="ab" * 32, chunk_count=3,
                      chunks_done=3, total_lines=20, blank_lines=1, rows_loaded=17, rows_rejected=2,
                      duration_s=1.5, peak_rss_bytes=10_000, error=None, rejects_by_reason={"E01": 2},
                      owner_since=dt.datetime(2026, 4, 1, 12, 0), flow_run_id="run-1")


def test_an_ingest_result_is_the_job_summary_with_typed_status_and_action() -> None:
    result = IngestResult.of(job_summary(), Action.RESUME)
    assert (result.job_id, result.action, result.status) == (4, Action.RESUME, JobStatus.COMPLETED_WITH_REJECTS)
    assert type(result.status) is JobStatus and type(result.action) is Action
    assert result.model_dump(exclude={"action"}) == job_summary().as_dict()  # every field of the job, no more


def abandoned_job() -> AbandonedJob:
    return AbandonedJob(job_id=5, status="running", source_uri="/in/CLIENTES_IN_0425.dat",
                        file_name="CLIENTES_IN_0425.dat", idle_seconds=950.0, last_seen=FINISHED, runs=1,
                        chunks_done=2, chunk_count=4)


def test_a_recovery_result_is_the_job_as_found_and_what_was_done() -> None:
    result = RecoveryResult.of(abandoned_job(), RecoveryAction.RESUMED, job_status="completed")
    assert (result.job_id, result.status, result.action, result.job_status) == (
        5, JobStatus.RUNNING, RecoveryAction.RESUMED, JobStatus.COMPLETED)
    assert type(result.status) is JobStatus and type(result.job_status) is JobStatus
    assert (result.flow_run_id, result.run_state, result.error) == (None, None, None)
    assert result.model_dump(include=set(AbandonedJob.model_fields)) == abandoned_job().model_dump()


def test_a_purge_result_is_the_purged_job_or_its_error() -> None:
    purged = PurgedJob(job_id=6, file_name="CLIENTES_IN_0125.dat", status="completed", finished_at=FINISHED,
                       source_uri="/store/6.dat", object="deleted", rejects_deleted=3, rows_deleted=40,
                       claim_released=True)
    result = PurgeResult.of(purged)
    assert result.model_dump(exclude={"error"}) == asdict(purged) and result.error is None
    assert type(result.status) is JobStatus
    row = {"id": 7, "file_name": "CLIENTES_IN_0225.dat", "status": "failed", "finished_at": FINISHED,
           "source_uri": "/store/7.dat"}
    failed = PurgeResult.failed(row, "storage unreachable")
    assert (failed.job_id, failed.status, failed.object, failed.error) == (
        7, JobStatus.FAILED, None, "storage unreachable")


def results() -> list[BaseModel]:
    return [IngestResult.of(job_summary(), Action.LOAD),
            RecoveryResult.of(abandoned_job(), RecoveryAction.STARTED, flow_run_id="run-2", run_state="Scheduled"),
            PurgeResult.failed({"id": 7, "file_name": "f.dat", "status": "failed", "finished_at": FINISHED,
                                "source_uri": "/store/7.dat"}, "storage unreachable")]


@pytest.mark.parametrize("serializer", [PickleSerializer(), JSONSerializer()], ids=["pickle", "json"])
@pytest.mark.parametrize("result", results(), ids=lambda r: type(r).__name__)
def test_prefect_persists_a_flow_result(serializer: Serializer[BaseModel], result: BaseModel) -> None:
    assert serializer.loads(serializer.dumps(result)) == result
