"""What every ``clientes-ingest`` command shares: exit codes, the one-line error, the database and console."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from clientes_ingest.settings import DEFAULT_DB_URL

EXIT_FAILED, EXIT_USAGE, EXIT_DB, EXIT_HELD = 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def db_url(args: argparse.Namespace) -> str:
    return args.db or os.environ.get("CLIENTES_DB_URL") or DEFAULT_DB_URL


def database(args: argparse.Namespace) -> Any:
    from clientes_ingest.db import Database, DatabaseUnavailable

    db = Database(db_url(args))
    try:
        db.check()
    except DatabaseUnavailable as exc:
        raise CliError(str(exc), EXIT_DB) from None
    return db


def make_console() -> Any:
    from rich.console import Console

    # Piped output (logs, CI, tests) gets wide tables instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


def flow_environment(args: argparse.Namespace) -> None:
    """Settings for flows run in this process: the database, storage, quiet logs, Prefect's ephemeral API."""
    os.environ["CLIENTES_DB_URL"] = db_url(args)
    if args.storage_root:
        os.environ["CLIENTES_STORAGE_ROOT"] = args.storage_root
    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls off this machine
    # The ephemeral API starts a server subprocess; on a busy or small machine it needs more than 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not prefect_api_url():
        # Prefect's ephemeral API serves this process alone: there is no other run to share the database
        # with, and no global concurrency limit to find (docs/concurrency.md); skip it, and its warning.
        os.environ.setdefault("CLIENTES_DB_WRITE_LIMIT", "")


def prefect_api_url() -> str | None:
    """The Prefect API this process would use (environment or profile); None means the ephemeral API."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from clientes_ingest.jobs import JobSummary
    from clientes_ingest.report import rejects_table, summary_rows

    fields = {k: v for k, v in summary.items() if k in JobSummary.__dataclass_fields__}
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
