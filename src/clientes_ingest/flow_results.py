"""What the flows return: ``IngestResult`` (``ingest-clientes``), one ``RecoveryResult`` per abandoned job
(``recover-abandoned-jobs``) and one ``PurgeResult`` per job (``purge-old-jobs``).

Pydantic models, so Prefect persists and serialises them like any result (pickle or JSON), and callers
read typed fields (``result.job_id``, ``result.status``) instead of dict keys. No prefect; no database
access (``IngestResult`` extends the stored ``job_queries.JobSummary``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from clientes_ingest.job_queries import JobSummary
from clientes_ingest.recovery import AbandonedJob
from clientes_ingest.statuses import Action, JobStatus, RecoveryAction

if TYPE_CHECKING:
    from clientes_ingest.retention import PurgedJob


class IngestResult(JobSummary):
    """What an ``ingest-clientes`` run did with its file (``action``) and its job as stored at the end
    (every field of ``JobSummary``, with the status as a ``JobStatus``)."""

    model_config = ConfigDict(frozen=True)

    action: Action
    status: JobStatus

    @classmethod
    def of(cls, job: JobSummary, action: Action) -> IngestResult:
        return cls(**job.as_dict(), action=action)


class RecoveryResult(AbandonedJob):
    """One abandoned job a ``recover-abandoned-jobs`` run found, as found (every field of
    ``AbandonedJob``, with the status as a ``JobStatus``), and what the run did with it.

    ``job_status``: the job's status after it was resumed in the recovery's process. ``flow_run_id`` and
    ``run_state``: the run of the deployment started (or found) for it. ``error``: why it failed.
    """

    status: JobStatus
    action: RecoveryAction
    job_status: JobStatus | None = None
    flow_run_id: str | None = None
    run_state: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, job: AbandonedJob, action: RecoveryAction, **outcome: Any) -> RecoveryResult:
        return cls(**job.model_dump(), action=action, **outcome)


class PurgeResult(BaseModel):
    """What a ``purge-old-jobs`` run did (or, in a dry run, would do) to one job; ``error`` if it could not.

    ``object``: what became of the stored file (deleted, missing, shared, outside storage, kept; in a dry
    run: would be deleted, ...); None when the purge failed before deciding.
    """

    model_config = ConfigDict(frozen=True)

    job_id: int
    file_name: str
    status: JobStatus
    finished_at: dt.datetime
    source_uri: str
    object: str | None = None
    rejects_deleted: int = 0
    rows_deleted: int = 0
    claim_released: bool = False
    rows_kept: bool = False
    error: str | None = None

    @classmethod
    def of(cls, purged: PurgedJob) -> PurgeResult:
        return cls(**asdict(purged))

    @classmethod
    def failed(cls, job: dict[str, Any], error: str) -> PurgeResult:
        """A job (a row of ``retention.find_purgeable``) that could not be purged."""
        return cls(job_id=job["id"], file_name=job["file_name"], status=job["status"],
                   finished_at=job["finished_at"], source_uri=job["source_uri"], error=error)
