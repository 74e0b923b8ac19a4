"""What the flows return: ``IngestResult`` (``ingest-clientes``), one ``RecoveryResult`` per abandoned job
(``recover-abandoned-jobs``) and one ``PurgeResult`` per job (``purge-old-jobs``).

Pydantic models, so Prefect persists and serialises them like any result (pickle or JSON), and callers
read typed fields (``result.job_id``, ``result.status``) instead of dict keys. Pure: no prefect, no
database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from clientes_ingest.statuses import Action, JobStatus, RecoveryAction

if TYPE_CHECKING:
    from clientes_ingest.job_queries import JobSummary
    from clientes_ingest.recovery import AbandonedJob
    from clientes_ingest.retention import PurgedJob


class IngestResult(BaseModel):
    """What an ``ingest-clientes`` run did with its file (``action``) and its job as stored at the end."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    action: Action
    status: JobStatus
    source_uri: str
    file_name: str
    size_bytes: int | None
    sha256: str | None
    chunk_count: int
    chunks_done: int
    total_lines: int
    blank_lines: int
    rows_loaded: int
    rows_rejected: int
    duration_s: float | None
    peak_rss_bytes: int | None
    error: str | None
    rejects_by_reason: dict[str, int] = {}
    rejects_not_stored: int = 0  # counted (in rows_rejected and rejects_by_reason) but over the stored cap
    owner_host: str | None = None
    owner_pid: int | None = None
    owner_since: dt.datetime | None = None
    flow_run_id: str | None = None
    heartbeat_at: dt.datetime | None = None

    @classmethod
    def of(cls, job: JobSummary, action: Action) -> IngestResult:
        return cls(**job.as_dict(), action=action)


class RecoveryResult(BaseModel):
    """One abandoned job a ``recover-abandoned-jobs`` run found, as found, and what the run did with it.

    ``job_status``: the job's status after it was resumed in the recovery's process. ``flow_run_id`` and
    ``run_state``: the run of the deployment started (or found) for it. ``error``: why it failed.
    """

    model_config = ConfigDict(frozen=True)

    job_id: int
    status: JobStatus
    source_uri: str
    file_name: str
    idle_seconds: float
    last_seen: dt.datetime
    runs: int
    chunks_done: int
    chunk_count: int
    action: RecoveryAction
    job_status: JobStatus | None = None
    flow_run_id: str | None = None
    run_state: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, job: AbandonedJob, action: RecoveryAction, **outcome: Any) -> RecoveryResult:
        return cls(**asdict(job), action=action, **outcome)


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
