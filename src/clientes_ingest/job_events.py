"""The Prefect events of an ingest job's lifecycle, built from the job's stored summary (pure, no Prefect).

A finished job becomes one event named from its final status (``clientes.job.completed``,
``clientes.job.failed``, ``clientes.job.rejected_file``); a jump in a reject reason's share becomes
``clientes.job.reject_share_jump``. The resource is the job (``clientes.job.<id>``, its file name and
sha256); the payload holds counts and reason codes only. Nothing personal ever goes in: no line, no
name, no DNI, and no error text (a driver's message can quote a value), only the job id to look it up;
the one exception is the reject-ratio guard's verdict of a ``rejected_file`` job, built from counts only.
``tasks.emit_job_events`` sends them; automations/ and prefect.yaml's triggers match on them.
Requires: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clientes_ingest.job_queries import JobSummary
from clientes_ingest.statuses import JobStatus

EVENT_PREFIX = "clientes.job"
COMPLETED = f"{EVENT_PREFIX}.completed"
FAILED = f"{EVENT_PREFIX}.failed"
REJECTED_FILE = f"{EVENT_PREFIX}.rejected_file"
REJECT_SHARE_JUMP = f"{EVENT_PREFIX}.reject_share_jump"

# Final job status -> event. A status not listed (running, pending, duplicate) emits nothing.
EVENT_BY_STATUS: dict[str, str] = {
    JobStatus.COMPLETED: COMPLETED,
    JobStatus.COMPLETED_WITH_REJECTS: COMPLETED,
    JobStatus.FAILED: FAILED,
    JobStatus.REJECTED_FILE: REJECTED_FILE,
}


@dataclass(frozen=True)
class JobEvent:
    """One event to emit: its name, the job as resource, and a payload of counts."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)


def job_resource(summary: JobSummary) -> dict[str, str]:
    """The job as a Prefect resource: id ``clientes.job.<id>``, file name, sha256 and final status."""
    return {
        "prefect.resource.id": f"{EVENT_PREFIX}.{summary.job_id}",
        "prefect.resource.name": summary.file_name,
        "clientes.job.id": str(summary.job_id),
        "clientes.job.status": summary.status,
        "clientes.file.name": summary.file_name,
        "clientes.file.sha256": summary.sha256 or "",
    }


def job_counts(summary: JobSummary) -> dict[str, Any]:
    """The job's counts and reason codes (no error text, no line content)."""
    lines = summary.total_lines or 0
    return {
        "job_id": summary.job_id,
        "status": summary.status,
        "total_lines": lines,
        "rows_loaded": summary.rows_loaded,
        "rows_rejected": summary.rows_rejected,
        "blank_lines": summary.blank_lines,
        "reject_share": round(summary.rows_rejected / lines, 6) if lines else 0.0,
        "rejects_by_reason": dict(summary.rejects_by_reason),
        "chunk_count": summary.chunk_count,
        "chunks_done": summary.chunks_done,
        "size_bytes": summary.size_bytes,
        "duration_s": summary.duration_s,
    }


def lifecycle_event(summary: JobSummary) -> JobEvent | None:
    """The event of a job's final status, or None for a job that has not finished."""
    name = EVENT_BY_STATUS.get(str(summary.status))
    if name is None:
        return None
    payload = job_counts(summary)
    if name == REJECTED_FILE and summary.error:
        # The guard's verdict (guard.describe): shares and reason codes only, and the only record of a
        # file refused early, whose chunk counts are not kept.
        payload["verdict"] = summary.error
    return JobEvent(name, job_resource(summary), payload)


def jump_event(summary: JobSummary, jumps: list[dict[str, Any]]) -> JobEvent | None:
    """``clientes.job.reject_share_jump`` naming the reasons whose share jumped, or None if none did."""
    if not jumps:
        return None
    return JobEvent(REJECT_SHARE_JUMP, job_resource(summary),
                    {"job_id": summary.job_id, "reasons": [dict(j) for j in jumps]})
