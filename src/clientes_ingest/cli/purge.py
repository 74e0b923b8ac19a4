"""The ``purge`` command: retention, through the purge-old-jobs flow (docs/retention.md)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from clientes_ingest.cli.common import (
    EXIT_FAILED,
    CliError,
    add_resource_options,
    command_settings,
    database,
    flow_settings,
    make_console,
)
from clientes_ingest.settings import parse_age, use_settings

if TYPE_CHECKING:
    from clientes_ingest.flow_results import PurgeResult


def cmd_purge(args: argparse.Namespace) -> int:
    if args.older_than is not None:
        try:
            parse_age(args.older_than)
        except ValueError as exc:
            raise CliError(f"--older-than: {exc}") from None
    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}")
    settings = command_settings(args)
    database(args, settings)
    settings = flow_settings(args, settings)
    from flows.purge import PurgeFailed, purge_old_jobs

    failed = False
    try:
        with use_settings(settings):
            results = purge_old_jobs(older_than=args.older_than, keep_rows=args.keep_rows, dry_run=args.dry_run,
                                     limit=args.limit)
    except PurgeFailed as exc:
        results, failed = exc.results, True
    except Exception as exc:
        raise CliError(f"{exc}", EXIT_FAILED) from None
    _print_results(results, args.dry_run)
    if failed:
        print(f"error: {sum(bool(r.error) for r in results)} of {len(results)} job(s) could not be "
              f"purged; run the purge again to complete them", file=sys.stderr)
    return EXIT_FAILED if failed else 0


def _print_results(results: list[PurgeResult], dry_run: bool) -> None:
    from rich.table import Table

    verb = "would remove" if dry_run else "removed"
    if not results:
        print("no job finished before the cutoff has anything left to purge; nothing to do")
        return
    table = Table(title=f"purge{' (dry run: nothing deleted)' if dry_run else ''}")
    for column in ("job", "file", "status", "finished", "stored file", "rejects", "rows", "claim"):
        table.add_column(column)
    for r in results:
        claim = "released" if r.claim_released else "kept"
        table.add_row(str(r.job_id), r.file_name, r.status, str(r.finished_at)[:16], r.object or "error",
                      f"{r.rejects_deleted:,}", "kept" if r.rows_kept else f"{r.rows_deleted:,}",
                      r.error[:60] if r.error else claim)
    make_console().print(table)
    files = sum(r.object in ("deleted", "would be deleted") for r in results)
    print(f"{len(results)} job(s): {verb} {files} stored file(s), "
          f"{sum(r.rejects_deleted for r in results):,} rejects, {sum(r.rows_deleted for r in results):,} rows")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    purge = sub.add_parser("purge", help="delete the stored file, rejects and rows of jobs finished before a "
                                         "cutoff (retention; docs/retention.md)")
    purge.add_argument("--older-than", metavar="AGE", help="purge jobs finished longer ago than this, e.g. 30d, "
                       "2w, 12h (default $CLIENTES_RETENTION or 30d)")
    purge.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    purge.add_argument("--keep-rows", action="store_true", help="keep the jobs' clientes rows (and so their "
                       "content claim: the same file stays 'already loaded')")
    purge.add_argument("--limit", type=int, default=1000, help="purge at most N jobs, the oldest first")
    add_resource_options(purge)
    purge.set_defaults(func=cmd_purge)
