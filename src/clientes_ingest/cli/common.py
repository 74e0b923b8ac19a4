"""What every ``clientes-ingest`` command shares: exit codes, the one-line error, the database and console."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clientes_ingest.exit_codes import EXIT_DB, EXIT_FAILED, EXIT_HELD, EXIT_USAGE
from clientes_ingest.settings import DEFAULT_DB_URL, Settings, load_settings, prefect_process_defaults

__all__ = ["EXIT_DB", "EXIT_FAILED", "EXIT_HELD", "EXIT_USAGE", "CliError", "add_resource_options", "command_settings",
           "database", "flow_settings", "make_console", "print_summary"]


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_resource_options(parser: argparse.ArgumentParser) -> None:
    """``--db``, ``--storage-root`` and ``-v``: the options of a command that runs a flow on the resources."""
    parser.add_argument("--db", help=f"SQLAlchemy URL (default $CLIENTES_DB_URL or {DEFAULT_DB_URL})")
    parser.add_argument("--storage-root", help="local storage directory (default ./.clientes-ingest)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")


def command_settings(args: argparse.Namespace, **overrides: object) -> Settings:
    """The settings of this command: the environment, with its options applied (``--db`` wins over a
    ``CLIENTES_DB_BLOCK``)."""
    settings = load_settings(db_url=getattr(args, "db", None), storage_root=getattr(args, "storage_root", None),
                             **overrides)
    return settings.model_copy(update={"db_block": None}) if getattr(args, "db", None) else settings


def database(args: argparse.Namespace, settings: Settings | None = None) -> Any:
    """The command's database (``resources``), checked: unreachable is exit code 3."""
    from clientes_ingest.db import DatabaseUnavailable
    from clientes_ingest.resources import open_database

    db = open_database(settings or command_settings(args))
    try:
        db.check()
    except DatabaseUnavailable as exc:
        raise CliError(str(exc), EXIT_DB) from None
    return db


def make_console() -> Any:
    from rich.console import Console

    # Piped output (logs, CI, tests) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


def flow_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """Prepare this process to run flows (quiet Prefect logs unless ``--verbose``, no telemetry, a patient
    ephemeral API) and the settings its flows run with (``use_settings``)."""
    prefect_process_defaults(verbose=args.verbose)
    from clientes_ingest.resources import prefect_api_configured

    if not prefect_api_configured() and "db_write_limit" not in settings.model_fields_set:
        # Prefect's ephemeral API serves this process alone: there is no other run to share the database
        # with, and no global concurrency limit to find (docs/concurrency.md); skip it, and its warning.
        settings = settings.model_copy(update={"db_write_limit": ""})
    return settings


def print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from clientes_ingest.job_queries import JobSummary
    from clientes_ingest.report import rejects_table, summary_rows

    fields = {k: v for k, v in summary.items() if k in JobSummary.model_fields}
    job = JobSummary(**fields)
    table = Table(title=f"clientes-ingest job {job.job_id}", show_header=False)
    for label, value in summary_rows(job):
        table.add_row(label, value)
    console = make_console()
    console.print(table)
    if job.rejects_by_reason:
        rejects = Table(title="Rejects by reason")
        for column in ("reason", "count", "share", "meaning"):
            rejects.add_column(column, justify="right" if column in ("count", "share") else "left")
        for row in rejects_table(job):
            rejects.add_row(row["reason"], f"{row['count']:,}", row["share"], row["meaning"])
        console.print(rejects)
