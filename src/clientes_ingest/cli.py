"""The ``clientes-ingest`` command: generate test files, run the ingest flow, resume abandoned jobs,
inspect jobs, print or apply the schema, provision AWS resources and register blocks.

Exit codes: 0 success (rejected lines are not failures), 1 the job failed, 2 bad input or usage,
3 the database is unreachable. Errors are one line on stderr and never contain a password.
Requires: nothing beyond the package; ``run`` and ``recover`` use Prefect's ephemeral API unless
PREFECT_API_URL is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clientes_ingest.settings import DEFAULT_DB_URL, parse_file_size, parse_size

EXIT_FAILED, EXIT_USAGE, EXIT_DB = 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _db_url(args: argparse.Namespace) -> str:
    return args.db or os.environ.get("CLIENTES_DB_URL") or DEFAULT_DB_URL


def _database(args: argparse.Namespace) -> Any:
    from clientes_ingest.db import Database, DatabaseUnavailable

    db = Database(_db_url(args))
    try:
        db.check()
    except DatabaseUnavailable as exc:
        raise CliError(str(exc), EXIT_DB) from None
    return db


def _console() -> Any:
    from rich.console import Console

    # Piped output (logs, CI, tests) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


# ------------------------------------------------------------------------------------------ generate


def cmd_generate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from clientes_ingest.generator import generate

    if (args.lines is None) == (args.size is None):
        raise CliError("give exactly one of --lines N or --size SIZE (e.g. --size 1GB)")
    size = parse_file_size(args.size) if args.size else None
    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True, disable=args.quiet) as bar:
        task = bar.add_task(f"generating {path.name}", total=size)
        written = 0

        def on_progress(total_bytes: int) -> None:
            nonlocal written
            bar.advance(task, total_bytes - written)
            written = total_bytes

        stats = generate(path, lines=args.lines, size=size, error_rate=args.error_rate, seed=args.seed,
                         progress=on_progress)
    print(f"wrote {stats.path}: {stats.lines:,} lines ({stats.corrupt_lines:,} corrupt), {stats.bytes:,} bytes")
    return 0


# ----------------------------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from clientes_ingest.staging import SourceError, check_local_source, is_remote

    if not is_remote(args.file):
        try:
            check_local_source(args.file)
        except SourceError as exc:
            raise CliError(str(exc)) from None
    if args.chunk_size:
        try:
            parse_size(args.chunk_size)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    db = _database(args)
    _flow_environment(args)
    summary = _run_flow(args, db)
    _print_summary(summary)
    if summary.get("action") in ("already_loaded", "in_progress"):
        return 0  # nothing for this run to do: not a failure
    return 0 if summary["status"] in ("completed", "completed_with_rejects") else EXIT_FAILED


def _flow_environment(args: argparse.Namespace) -> None:
    """Settings for flows run in this process: the database, storage, quiet logs, Prefect's ephemeral API."""
    os.environ["CLIENTES_DB_URL"] = _db_url(args)
    if args.storage_root:
        os.environ["CLIENTES_STORAGE_ROOT"] = args.storage_root
    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls off this machine
    # The ephemeral API starts a server subprocess; on a busy or small machine it needs more than 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not _prefect_api_url():
        # Prefect's ephemeral API serves this process alone: there is no other run to share the database
        # with, and no global concurrency limit to find (docs/concurrency.md); skip it, and its warning.
        os.environ.setdefault("CLIENTES_DB_WRITE_LIMIT", "")


def _prefect_api_url() -> str | None:
    """The Prefect API this process would use (environment or profile); None means the ephemeral API."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _run_flow(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn, TransferSpeedColumn

    from clientes_ingest import progress
    from clientes_ingest.jobs import get_job

    size = Path(args.file).stat().st_size if not args.file.startswith("s3://") else None
    with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                  TransferSpeedColumn(), TimeElapsedColumn(), disable=args.quiet) as bar:
        bars = {"stage": bar.add_task("hash + plan", total=size), "load": bar.add_task("parse + load", total=size)}

        def on_event(phase: str, nbytes: int) -> None:
            bar.advance(bars[phase], nbytes)

        from flows.ingest import IngestFailed, ingest_clientes

        with progress.listening(on_event):
            try:
                result: dict[str, Any] = ingest_clientes(source=args.file, force=args.force, job_id=args.job_id,
                                                         chunk_size=args.chunk_size)
            except IngestFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                if exc.job_id is None:
                    raise CliError(str(exc), EXIT_FAILED) from None
                return get_job(db.engine, exc.job_id).as_dict()
            except Exception as exc:
                raise CliError(f"{exc}", EXIT_FAILED) from None
    if result.get("action") == "already_loaded":
        print(f"{Path(args.file).name} was already loaded by job {result['job_id']}; nothing to do "
              f"(use --force to load it again)")
    elif result.get("action") == "in_progress":
        print(f"job {result['job_id']} is loading this file in another run; nothing to do")
    return result


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from clientes_ingest.jobs import JobSummary
    from clientes_ingest.report import rejects_table, summary_rows

    fields = {k: v for k, v in summary.items() if k in JobSummary.__dataclass_fields__}
    job = JobSummary(**fields)
    table = Table(title=f"clientes-ingest job {job.job_id}", show_header=False)
    for label, value in summary_rows(job):
        table.add_row(label, value)
    console = _console()
    console.print(table)
    if job.rejects_by_reason:
        rejects = Table(title="Rejects by reason")
        for column in ("reason", "count", "share", "meaning"):
            rejects.add_column(column, justify="right" if column in ("count", "share") else "left")
        for row in rejects_table(job):
            rejects.add_row(row["reason"], f"{row['count']:,}", row["share"], row["meaning"])
        console.print(rejects)


# ------------------------------------------------------------------------------------------- recover


def cmd_recover(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}")
    if args.lease_seconds is not None and args.lease_seconds <= 0:
        raise CliError(f"--lease-seconds must be positive, got {args.lease_seconds}")
    _database(args)
    _flow_environment(args)
    if args.lease_seconds is not None:
        # The runs resumed here take a job over only past their own lease: the same one.
        os.environ["CLIENTES_JOB_LEASE_SECONDS"] = str(args.lease_seconds)
    from flows.recover import RecoveryFailed, recover_abandoned_jobs

    failed = False
    try:
        results = recover_abandoned_jobs(lease_seconds=args.lease_seconds, limit=args.limit)
    except RecoveryFailed as exc:
        results, failed = exc.results, True
    except Exception as exc:
        raise CliError(f"{exc}", EXIT_FAILED) from None
    if not results:
        print("no abandoned jobs; nothing to do")
    for r in results:
        print(f"job {r['job_id']} ({r['file_name']}, {r['status']}, idle {r['idle_seconds']:.0f}s, "
              f"{r['chunks_done']}/{r['chunk_count']} chunks done): {r['action']}"
              + (f", now {r['job_status']}" if r.get("job_status") else "")
              + (f": {r['error']}" if r.get("error") else ""))
    if failed:
        print(f"error: {sum(r['action'] == 'failed' for r in results)} of {len(results)} abandoned job(s) "
              f"could not be resumed", file=sys.stderr)
    return EXIT_FAILED if failed else 0


# ---------------------------------------------------------------------------------------------- jobs


def cmd_jobs(args: argparse.Namespace) -> int:
    from rich.table import Table

    from clientes_ingest.jobs import JobError, get_job, job_chunks, list_jobs, list_rejects

    db = _database(args)
    console = _console()
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
    _print_summary(summary.as_dict())
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


# -------------------------------------------------------------------------------------------- schema


def cmd_schema(args: argparse.Namespace) -> int:
    from clientes_ingest.db import DIALECTS, schema_ddl

    if args.apply:
        db = _database(args)
        db.ensure_schema()
        print(f"schema applied to {db.safe_url}")
        return 0
    if args.write_dir:
        out = Path(args.write_dir)
        out.mkdir(parents=True, exist_ok=True)
        for dialect in DIALECTS:
            (out / f"{dialect}.sql").write_text(schema_ddl(dialect), encoding="utf-8")
            print(f"wrote {out / f'{dialect}.sql'}")
        return 0
    print(schema_ddl(args.dialect), end="")
    return 0


# ----------------------------------------------------------------------------------- aws and blocks


def cmd_aws_init(args: argparse.Namespace) -> int:
    from clientes_ingest.aws import ProvisioningError, init_from_settings
    from clientes_ingest.settings import load_settings

    try:
        result = init_from_settings(load_settings())
    except ProvisioningError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_blocks_register(args: argparse.Namespace) -> int:
    from blocks.register import register_all
    from clientes_ingest.settings import load_settings

    for name, outcome in register_all(load_settings()).items():
        print(f"{name}: {outcome}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from clientes_ingest.devstack import run_dev_stack

    return run_dev_stack(args)


# ------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clientes-ingest", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a test file like the daily CLIENTES file")
    gen.add_argument("file")
    gen.add_argument("--lines", type=int)
    gen.add_argument("--size", help="target size, e.g. 1GB or 500MiB")
    gen.add_argument("--error-rate", type=float, default=0.2)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--quiet", action="store_true")
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="ingest a file through the Prefect flow (ephemeral API by default)")
    run.add_argument("file", help="local path or s3://bucket/key")
    run.add_argument("--db", help=f"SQLAlchemy URL (default $CLIENTES_DB_URL or {DEFAULT_DB_URL})")
    run.add_argument("--chunk-size", help="bytes per chunk, e.g. 32MB (default $CLIENTES_CHUNK_SIZE or 32MiB)")
    run.add_argument("--force", action="store_true", help="load again a file whose content was already loaded")
    run.add_argument("--job-id", type=int, help="resume this job (or load into this pre-registered job)")
    run.add_argument("--storage-root", help="local storage directory (default ./.clientes-ingest)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    run.set_defaults(func=cmd_run)

    recover = sub.add_parser("recover", help="resume abandoned jobs: running with no heartbeat for longer than "
                                             "the lease, or pending for longer than it (ephemeral API by default)")
    recover.add_argument("--lease-seconds", type=float, help="idle this long makes a job abandoned (default "
                         "$CLIENTES_JOB_LEASE_SECONDS or 900)")
    recover.add_argument("--limit", type=int, default=10, help="resume at most N jobs, the longest idle first")
    recover.add_argument("--db", help=f"SQLAlchemy URL (default $CLIENTES_DB_URL or {DEFAULT_DB_URL})")
    recover.add_argument("--storage-root", help="local storage directory (default ./.clientes-ingest)")
    recover.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    recover.set_defaults(func=cmd_recover)

    jobs = sub.add_parser("jobs", help="list jobs, or show one job with its counts per reason and per chunk")
    jobs.add_argument("job_id", nargs="?", type=int)
    jobs.add_argument("--db")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--rejects", type=int, default=0, metavar="N", help="also show the first N rejects")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=cmd_jobs)

    schema = sub.add_parser("schema", help="print the DDL for a dialect, or apply it to a database")
    schema.add_argument("--dialect", choices=("mssql", "postgresql", "sqlite"), default="mssql")
    schema.add_argument("--apply", action="store_true", help="create the missing tables in --db")
    schema.add_argument("--db")
    schema.add_argument("--write-dir", help="write <dialect>.sql for every dialect into this directory")
    schema.set_defaults(func=cmd_schema)

    aws = sub.add_parser("aws", help="AWS resources").add_subparsers(dest="aws_command", required=True)
    aws.add_parser("init", help="create bucket, queue, DLQ and bucket notification (idempotent)").set_defaults(
        func=cmd_aws_init)
    blocks = sub.add_parser("blocks", help="Prefect blocks").add_subparsers(dest="blocks_command", required=True)
    blocks.add_parser("register", help="create or update the blocks and the database-writers concurrency limit "
                      "from the environment").set_defaults(func=cmd_blocks_register)
    dev = sub.add_parser("dev", help="start the whole stack locally without Docker (Prefect server + UI, "
                                     "worker, moto S3/SQS, trigger, API) until Ctrl-C")
    dev.add_argument("--db", help="SQLAlchemy URL of the stack's database (default: SQLite under --state-dir)")
    dev.add_argument("--state-dir", default=".clientes-dev", help="where the stack keeps its files and logs")
    dev.add_argument("--host", default="127.0.0.1", help="interface the services listen on")
    for name, port in (("prefect", 4200), ("api", 8000), ("trigger", 9100), ("moto", 5000)):
        dev.add_argument(f"--{name}-port", type=int, default=port, help=f"default {port}; 0 picks a free port")
    dev.add_argument("--project-dir", help="checkout with prefect.yaml (default: found from the working directory)")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
