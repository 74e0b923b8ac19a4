"""Data-quality trend: today's reject share per reason against the last completed jobs.

A reason "jumps" when its share of today's lines is more than ``JUMP_FACTOR`` (2x) the median of its
share over the last ``HISTORY_JOBS`` (7) completed jobs, and at least ``MIN_SHARE`` (0.1 % of the lines,
so a handful of lines in a clean history is not an alarm). A reason absent from a past job counts as a
share of 0 there. With no completed job before this one there is nothing to compare and no jump.
The summary artifact shows the comparison; ``job_events.jump_event`` turns jumps into an event.
Requires: an engine whose schema exists (``reject_history`` only; the rest is pure).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from clientes_ingest.db import ingest_jobs
from clientes_ingest.job_queries import JobSummary, rejects_by_reason
from clientes_ingest.jobs import DONE_STATUSES

HISTORY_JOBS = 7
JUMP_FACTOR = 2.0
MIN_SHARE = 0.001


@dataclass(frozen=True)
class PastJob:
    """What the trend needs of a completed job: its lines and its rejects per reason."""

    job_id: int
    total_lines: int
    rejects_by_reason: dict[str, int]


@dataclass(frozen=True)
class ReasonTrend:
    """One reason: today's share, the median share of the past jobs, and whether it jumped."""

    reason: str
    share: float
    median_share: float | None
    jump: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shares(total_lines: int, by_reason: dict[str, int]) -> dict[str, float]:
    """Each reason's count as a share of the file's lines."""
    return {reason: count / total_lines for reason, count in by_reason.items()} if total_lines else {}


def compare(
    summary: JobSummary, history: list[PastJob], *, factor: float = JUMP_FACTOR, min_share: float = MIN_SHARE
) -> list[ReasonTrend]:
    """Today's share per reason (today's reasons and the past ones) against the median of ``history``."""
    today = shares(summary.total_lines, summary.rejects_by_reason)
    past = [shares(job.total_lines, job.rejects_by_reason) for job in history if job.total_lines]
    reasons = sorted(set(today).union(*past), key=lambda r: (-today.get(r, 0.0), r))
    trends = []
    for reason in reasons:
        share = today.get(reason, 0.0)
        median = statistics.median(p.get(reason, 0.0) for p in past) if past else None
        jump = median is not None and share >= min_share and share > factor * median
        trends.append(ReasonTrend(reason, share, median, jump))
    return trends


def jumps(trends: list[ReasonTrend]) -> list[dict[str, Any]]:
    """The reasons that jumped, as plain dicts (for the event payload)."""
    return [t.as_dict() for t in trends if t.jump]


def trend_markdown(trends: list[ReasonTrend], history_size: int) -> str:
    """The comparison as a markdown section of the summary artifact."""
    if history_size == 0:
        return "## Reject share trend\n\nNo completed job before this one: nothing to compare yet.\n"
    lines = ["## Reject share trend", "",
             f"Share of the file's lines per reason, against the median of the last {history_size} completed "
             f"job(s); a jump is more than {JUMP_FACTOR:g}x the median (and at least {100 * MIN_SHARE:g}%).", "",
             "| Reason | Today | Median | |", "|---|---:|---:|---|"]
    for t in trends:
        median = "-" if t.median_share is None else f"{100 * t.median_share:.2f}%"
        lines.append(f"| `{t.reason}` | {100 * t.share:.2f}% | {median} | {'**jump**' if t.jump else ''} |")
    return "\n".join(lines) + "\n"


def reject_history(engine: Engine, job_id: int, limit: int = HISTORY_JOBS) -> list[PastJob]:
    """The last ``limit`` completed jobs other than ``job_id``, latest finished first."""
    j = ingest_jobs.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(j.id, j.total_lines).where(j.status.in_(DONE_STATUSES), j.id != job_id)
            .order_by(j.finished_at.desc(), j.id.desc()).limit(limit)
        ).all()
        return [PastJob(int(row.id), int(row.total_lines or 0), rejects_by_reason(conn, int(row.id)))
                for row in rows]
