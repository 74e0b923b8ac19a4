"""Job lifecycle events and the reject-share trend, pure: event names per final status, nothing personal
in them, and the jump rule (> 2x the median of the last completed jobs, at least 0.1 %)."""

from __future__ import annotations

import json

import pytest

from clientes_ingest import job_events, quality
from clientes_ingest.job_queries import JobSummary
from clientes_ingest.quality import PastJob

SHA = "ab" * 32


def summary(status: str = "completed_with_rejects", lines: int = 1000, by_reason: dict[str, int] | None = None,
            error: str | None = None) -> JobSummary:
    by_reason = {"fecha_ingreso": 150, "es_pep": 50} if by_reason is None else by_reason
    rejected = sum(by_reason.values())
    return JobSummary(job_id=7, status=status, source_uri="s3://b/incoming/CLIENTES_IN_0525.dat",
                      file_name="CLIENTES_IN_0525.dat", size_bytes=51_000, sha256=SHA, chunk_count=2,
                      chunks_done=2, total_lines=lines, blank_lines=0, rows_loaded=lines - rejected,
                      rows_rejected=rejected, duration_s=1.5, peak_rss_bytes=None, error=error,
                      rejects_by_reason=by_reason)


@pytest.mark.parametrize(("status", "event"), [
    ("completed", "clientes.job.completed"), ("completed_with_rejects", "clientes.job.completed"),
    ("failed", "clientes.job.failed"), ("rejected_file", "clientes.job.rejected_file"),
])
def test_final_status_names_the_event(status: str, event: str) -> None:
    built = job_events.lifecycle_event(summary(status))
    assert built is not None and built.event == event
    assert built.resource["prefect.resource.id"] == "clientes.job.7"
    assert built.resource["clientes.file.name"] == "CLIENTES_IN_0525.dat"
    assert built.resource["clientes.file.sha256"] == SHA
    assert built.payload["rows_rejected"] == 200 and built.payload["reject_share"] == 0.2
    assert built.payload["rejects_by_reason"] == {"fecha_ingreso": 150, "es_pep": 50}


@pytest.mark.parametrize("status", ["running", "pending", "duplicate"])
def test_unfinished_jobs_emit_nothing(status: str) -> None:
    assert job_events.lifecycle_event(summary(status)) is None


def test_no_error_text_in_events() -> None:
    # A driver's message can quote a value ("Truncated value: 'María Gómez'"): events never carry it.
    built = job_events.lifecycle_event(summary("failed", error="String or binary data would be truncated. "
                                               "Truncated value: 'María Gómez 45678901'"))
    assert built is not None
    text = json.dumps([built.resource, built.payload], ensure_ascii=False)
    assert "María" not in text and "45678901" not in text and "Truncated" not in text


def history(*shares: float, reason: str = "fecha_ingreso") -> list[PastJob]:
    return [PastJob(i, 1000, {reason: round(share * 1000)} if share else {}) for i, share in enumerate(shares)]


def test_a_share_above_twice_the_median_jumps() -> None:
    trends = quality.compare(summary(by_reason={"fecha_ingreso": 210}),
                             history(0.10, 0.10, 0.09, 0.11, 0.10, 0.12, 0.10))
    assert [(t.reason, t.jump) for t in trends] == [("fecha_ingreso", True)]
    assert trends[0].median_share == pytest.approx(0.10) and trends[0].share == pytest.approx(0.21)
    event = job_events.jump_event(summary(), quality.jumps(trends))
    assert event is not None and event.event == "clientes.job.reject_share_jump"
    assert event.payload["reasons"][0]["reason"] == "fecha_ingreso"


def test_at_most_twice_the_median_does_not_jump() -> None:
    trends = quality.compare(summary(by_reason={"fecha_ingreso": 200}), history(0.10, 0.10, 0.10))
    assert not any(t.jump for t in trends)
    assert job_events.jump_event(summary(), quality.jumps(trends)) is None


def test_a_new_reason_jumps_only_above_the_minimum_share() -> None:
    clean = history(0.1, 0.1, 0.1)
    few = quality.compare(summary(by_reason={"fecha_ingreso": 100, "dni": 0}, lines=100_000), clean)
    assert not any(t.jump for t in few)  # 0.1 % of fecha_ingreso against a 10 % median: a drop
    new = quality.compare(summary(by_reason={"fecha_ingreso": 100, "dni": 50}, lines=1000), clean)
    dni = next(t for t in new if t.reason == "dni")
    assert dni.jump and dni.median_share == 0.0
    tiny = quality.compare(summary(by_reason={"fecha_ingreso": 10_000, "dni": 5}, lines=100_000), clean)
    assert not next(t for t in tiny if t.reason == "dni").jump  # 0.005 %: below the minimum


def test_reasons_gone_today_are_listed_and_no_history_means_no_jump() -> None:
    trends = quality.compare(summary(by_reason={}), history(0.1, 0.2))
    assert [(t.reason, t.share, t.jump) for t in trends] == [("fecha_ingreso", 0.0, False)]
    first = quality.compare(summary(), [])
    assert all(t.median_share is None and not t.jump for t in first)
    assert "nothing to compare" in quality.trend_markdown(first, 0)
    assert "**jump**" in quality.trend_markdown(quality.compare(summary(by_reason={"dni": 100}), history(0.1)), 1)


def test_a_rejected_file_carries_the_guards_verdict() -> None:
    verdict = "rejected_file: 99.3% of 302 non-blank lines rejected, above the limit of 50%"
    built = job_events.lifecycle_event(summary("rejected_file", error=verdict))
    assert built is not None and built.payload["verdict"] == verdict
    failed = job_events.lifecycle_event(summary("failed", error="anything"))
    assert failed is not None and "verdict" not in failed.payload
