"""Human-readable reports of a job: the markdown summary and the rejects-by-reason table published
as Prefect artifacts, and shown by the CLI. Pure functions. Requires: nothing.
"""

from __future__ import annotations

from typing import Any

from clientes_ingest.job_queries import JobSummary
from clientes_ingest.reasons import REASONS


def human_bytes(value: int | float | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def rejects_table(summary: JobSummary) -> list[dict[str, Any]]:
    """One row per reject reason: code, count, share of the file's lines, meaning."""
    total = summary.total_lines or 1
    return [
        {"reason": reason, "count": count, "share": f"{100 * count / total:.2f}%",
         "meaning": REASONS.get(reason, "")}
        for reason, count in summary.rejects_by_reason.items()
    ]


def summary_rows(summary: JobSummary) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs, shared by the markdown and the CLI table."""
    rate = summary.rows_per_second
    return [
        ("Job", str(summary.job_id)),
        ("Status", summary.status),
        ("File", f"{summary.file_name} ({human_bytes(summary.size_bytes)})"),
        ("Source", summary.source_uri),
        ("Lines", f"{summary.total_lines:,}"),
        ("Rows loaded", f"{summary.rows_loaded:,}"),
        ("Rows rejected", f"{summary.rows_rejected:,}"),
    ] + ([("Rejects not stored", f"{summary.rejects_not_stored:,} counted but not stored (over "
                                   f"CLIENTES_MAX_STORED_REJECTS)")] if summary.rejects_not_stored else []) + [
        ("Blank lines", f"{summary.blank_lines:,}"),
        ("Chunks", f"{summary.chunks_done}/{summary.chunk_count}"),
        ("Duration", "-" if summary.duration_s is None else f"{summary.duration_s:.1f} s"),
        ("Rows/s", "-" if rate is None else f"{rate:,.0f}"),
        ("Peak RSS (largest process)", human_bytes(summary.peak_rss_bytes)),
    ] + ([("Error", summary.error)] if summary.error else [])


def summary_markdown(summary: JobSummary, chunks: list[dict[str, Any]] | None = None) -> str:
    """The job summary, its rejects by reason and (optionally) its chunks as markdown."""
    lines = [f"# Ingest job {summary.job_id}: {summary.status}", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in summary_rows(summary)]
    if summary.rejects_by_reason:
        lines += ["", "## Rejects by reason", "", "| Reason | Count | Share | Meaning |", "|---|---:|---:|---|"]
        lines += [f"| `{r['reason']}` | {r['count']:,} | {r['share']} | {r['meaning']} |"
                  for r in rejects_table(summary)]
    if chunks:
        lines += ["", "## Chunks", "",
                  "| # | Status | Attempts | Lines | Rows | Rejects | Seconds | Peak RSS | CPU s |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in chunks:
            seconds = "-" if c["duration_s"] is None else f"{c['duration_s']:.2f}"
            cpu = "-" if c["cpu_seconds"] is None else f"{c['cpu_seconds']:.2f}"
            lines.append(f"| {c['chunk_no']} | {c['status']} | {c['attempts']} | {c['line_count']:,} | "
                         f"{c['rows_loaded'] or 0:,} | {c['rows_rejected'] or 0:,} | {seconds} | "
                         f"{human_bytes(c['peak_rss_bytes'])} | {cpu} |")
    return "\n".join(lines) + "\n"
