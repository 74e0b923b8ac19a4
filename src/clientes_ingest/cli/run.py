"""The ``run`` command: ingest one file through the flow in this process (ephemeral API by default)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from clientes_ingest.cli.common import (
    EXIT_FAILED,
    CliError,
    database,
    flow_environment,
    print_summary,
)
from clientes_ingest.settings import DEFAULT_DB_URL, parse_size


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
    db = database(args)
    flow_environment(args)
    summary = _run_flow(args, db)
    print_summary(summary)
    if summary.get("action") in ("already_loaded", "in_progress"):
        return 0  # nothing for this run to do: not a failure
    return 0 if summary["status"] in ("completed", "completed_with_rejects") else EXIT_FAILED


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




def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
