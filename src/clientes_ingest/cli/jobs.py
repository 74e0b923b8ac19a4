"""The ``jobs`` command: list jobs, or show one with its counts per reason and per chunk."""

from __future__ import annotations

import argparse
import json

from clientes_ingest.cli.common import CliError, database, make_console, print_summary


def cmd_jobs(args: argparse.Namespace) -> int:
    from rich.table import Table

    from clientes_ingest.job_queries import JobError, get_job, job_chunks, list_jobs, list_rejects

    db = database(args)
    console = make_console()
    if args.job_id is None:
        if args.json:
            print(json.dumps(list_jobs(db.engine, args.limit), default=str, indent=2))
            return 0
        table = Table(title="ingest jobs (newest first)")
        for column in ("id", "file", "status", "rows", "rejects", "lines", "seconds", "created"):
            table.add_column(column)
        for job in list_jobs(db.engine, args.limit):
            table.add_row(str(job["id"]), job["file_name"], job["status"], f"{job['rows_loaded'] or 0:,}",
                          f"{job['rows_rejected'] or 0:,}", f"{job['total_lines'] or 0:,}",
                          "-" if job["duration_s"] is None else f"{job['duration_s']:.1f}", str(job["created_at"]))
        console.print(table)
        return 0
    try:
        summary = get_job(db.engine, args.job_id)
    except JobError as exc:
        raise CliError(str(exc)) from None
    chunks = job_chunks(db.engine, args.job_id)
    if args.json:
        print(json.dumps({**summary.as_dict(), "chunks": chunks}, default=str, indent=2))
        return 0
    print_summary(summary.as_dict())
    table = Table(title="chunks")
    for column in ("#", "status", "attempts", "first line", "lines", "rows", "rejects", "seconds", "error"):
        table.add_column(column)
    for c in chunks:
        table.add_row(str(c["chunk_no"]), c["status"], str(c["attempts"]), f"{c['first_line']:,}",
                      f"{c['line_count']:,}", f"{c['rows_loaded'] or 0:,}", f"{c['rows_rejected'] or 0:,}",
                      "-" if c["duration_s"] is None else f"{c['duration_s']:.2f}", (c["error"] or "")[:80])
    console.print(table)
    if args.rejects:
        table = Table(title=f"first {args.rejects} rejects")
        for column in ("line", "reason", "raw line (truncated)", "bytes"):
            table.add_column(column)
        for r in list_rejects(db.engine, args.job_id, limit=args.rejects):
            table.add_row(str(r["line_number"]), r["reason"], r["raw_line"][:100], str(r["raw_length"]))
        console.print(table)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = sub.add_parser("jobs", help="list jobs, or show one job with its counts per reason and per chunk")
    jobs.add_argument("job_id", nargs="?", type=int)
    jobs.add_argument("--db")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--rejects", type=int, default=0, metavar="N", help="also show the first N rejects")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=cmd_jobs)
