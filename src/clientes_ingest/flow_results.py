"""What the flows return: ``IngestResult`` (``ingest-clientes``).

Pydantic models, so Prefect persists and serialises them like any result (pickle or JSON), and callers
read typed fields (``result.job_id``, ``result.status``) instead of dict keys. Pure: no prefect, no
database.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from clientes_ingest.statuses import Action, JobStatus

if TYPE_CHECKING:
    from clientes_ingest.job_queries import JobSummary


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
