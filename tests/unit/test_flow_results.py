"""The flows' results are typed models that Prefect's serializers persist and read back unchanged."""

from __future__ import annotations

import datetime as dt

import pytest
from prefect.serializers import JSONSerializer, PickleSerializer, Serializer

from clientes_ingest.flow_results import IngestResult
from clientes_ingest.job_queries import JobSummary
from clientes_ingest.statuses import Action, JobStatus


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


@pytest.mark.parametrize("serializer", [PickleSerializer(), JSONSerializer()], ids=["pickle", "json"])
def test_prefect_persists_an_ingest_result(serializer: Serializer[IngestResult]) -> None:
    result = IngestResult.of(job_summary(), Action.LOAD)
    assert serializer.loads(serializer.dumps(result)) == result
