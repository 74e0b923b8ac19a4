"""The ``run`` command: ingest one file through the flow in this process (ephemeral API by default).

Exit codes: 0 the file is loaded (now, or already by an earlier job); 1 the job failed or its file was
refused (``rejected_file``); 2 bad input; 3 database unreachable; 4 the file's job is held by another
run that may be alive (its process on this host exists, or its flow run has not ended, and its
heartbeat is within the lease): the message says who holds it and since when. A holder that is provably
dead (same host and its pid gone or reused, or its flow run ended) is taken over at once instead.
``--wait`` waits for the holder to finish and exits by the job's outcome (or takes the job over if the
holder dies meanwhile).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clientes_ingest.cli.common import (
    EXIT_FAILED,
    EXIT_HELD,
    CliError,
    command_settings,
    database,
    flow_settings,
    print_summary,
)
from clientes_ingest.flow_results import IngestResult
from clientes_ingest.settings import DEFAULT_DB_URL, Settings, parse_size, use_settings
from clientes_ingest.statuses import LOADED, Action

if TYPE_CHECKING:
    from clientes_ingest.job_queries import JobSummary


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
    settings = command_settings(args)
    db = database(args, settings)
    settings = flow_settings(args, settings)
    outcome = _run_flow(args, db, settings)
    while isinstance(outcome, IngestResult) and outcome.action == Action.IN_PROGRESS and args.wait:
        finished = _wait_for_holder(db, outcome.job_id, settings)
        outcome = finished if finished is not None else _run_flow(args, db, settings)  # None: take it over
    action = outcome.action if isinstance(outcome, IngestResult) else None
    if action == Action.IN_PROGRESS:
        print(f"error: job {outcome.job_id} ({Path(args.file).name}) is being loaded by another run that may "
              f"be alive: {_holder_of(db, outcome.job_id)}; not loading it twice. Use --wait to wait for it and "
              f"exit by its outcome", file=sys.stderr)
        return EXIT_HELD
    print_summary(outcome.model_dump() if isinstance(outcome, IngestResult) else outcome.as_dict())
    if action == Action.ALREADY_LOADED:
        return 0  # loaded by an earlier job: nothing for this run to do, not a failure
    return 0 if outcome.status in LOADED else EXIT_FAILED


def _wait_for_holder(db: Any, job_id: int, settings: Settings) -> JobSummary | None:
    """The job's summary once its holder finishes it; None if the holder died (the caller takes it over)."""
    from clientes_ingest import lease
    from clientes_ingest.tasks import holder_is_dead

    holder = lease.holder(db.engine, job_id)
    if holder is not None:
        print(f"job {job_id} is being loaded by {holder.describe()}; waiting for it to finish", file=sys.stderr)
    return lease.wait_for_job(db.engine, job_id, lease_seconds=settings.job_lease_seconds,
                              holder_is_dead=holder_is_dead)


def _run_flow(args: argparse.Namespace, db: Any, settings: Settings) -> IngestResult | JobSummary:
    """The run's result; the job's stored summary if the run failed with a job (``IngestFailed``)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn, TransferSpeedColumn

    from clientes_ingest import progress
    from clientes_ingest.job_queries import get_job

    size = Path(args.file).stat().st_size if not args.file.startswith("s3://") else None
    with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                  TransferSpeedColumn(), TimeElapsedColumn(), disable=args.quiet) as bar:
        bars = {"stage": bar.add_task("hash + plan", total=size), "load": bar.add_task("parse + load", total=size)}

        def on_event(phase: str, nbytes: int) -> None:
            bar.advance(bars[phase], nbytes)

        from flows.ingest import IngestFailed, build_task_runner, ingest_clientes

        flow = ingest_clientes.with_options(task_runner=build_task_runner(settings))
        with progress.listening(on_event), use_settings(settings):
            try:
                result = flow(source=args.file, force=args.force, job_id=args.job_id, chunk_size=args.chunk_size)
            except IngestFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                if exc.job_id is None:
                    raise CliError(str(exc), EXIT_FAILED) from None
                return get_job(db.engine, exc.job_id)
            except Exception as exc:
                raise CliError(f"{exc}", EXIT_FAILED) from None
    if result.action == Action.ALREADY_LOADED:
        print(f"{Path(args.file).name} was already loaded by job {result.job_id}; nothing to do "
              f"(use --force to load it again)")
    return result


def _holder_of(db: Any, job_id: int) -> str:
    """Who holds the job now, for the message of a run that found it held."""
    from clientes_ingest.lease import holder

    current = holder(db.engine, job_id)
    return current.describe() if current is not None else "a run that has just finished"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="ingest a file through the Prefect flow (ephemeral API by default)")
    run.add_argument("file", help="local path or s3://bucket/key")
    run.add_argument("--db", help=f"SQLAlchemy URL (default $CLIENTES_DB_URL or {DEFAULT_DB_URL})")
    run.add_argument("--chunk-size", help="bytes per chunk, e.g. 32MiB (binary) or 32MB (decimal); "
                     "default $CLIENTES_CHUNK_SIZE or 32MiB")
    run.add_argument("--force", action="store_true", help="load again a file whose content was already loaded")
    run.add_argument("--job-id", type=int, help="resume this job (or load into this pre-registered job)")
    run.add_argument("--storage-root", help="local storage directory (default ./.clientes-ingest)")
    run.add_argument("--wait", action="store_true", help="if another live run holds this file's job, wait for it "
                     "to finish and exit by its outcome (default: exit 4 at once)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    run.set_defaults(func=cmd_run)
