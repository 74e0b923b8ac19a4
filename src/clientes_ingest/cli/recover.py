"""The ``recover`` command: resume abandoned jobs with the recover-abandoned-jobs flow."""

from __future__ import annotations

import argparse
import sys

from clientes_ingest.cli.common import (
    EXIT_FAILED,
    CliError,
    add_resource_options,
    command_settings,
    database,
    flow_settings,
)
from clientes_ingest.settings import use_settings
from clientes_ingest.statuses import RecoveryAction


def cmd_recover(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}")
    if args.lease_seconds is not None and args.lease_seconds <= 0:
        raise CliError(f"--lease-seconds must be positive, got {args.lease_seconds}")
    # The runs resumed here take a job over only past their own lease: the same one.
    settings = command_settings(args, job_lease_seconds=args.lease_seconds)
    database(args, settings)
    settings = flow_settings(args, settings)
    from flows.recover import RecoveryFailed, recover_abandoned_jobs

    failed = False
    try:
        with use_settings(settings):
            results = recover_abandoned_jobs(lease_seconds=args.lease_seconds, limit=args.limit)
    except RecoveryFailed as exc:
        results, failed = exc.results, True
    except Exception as exc:
        raise CliError(f"{exc}", EXIT_FAILED) from None
    if not results:
        print("no abandoned jobs; nothing to do")
    for r in results:
        print(f"job {r.job_id} ({r.file_name}, {r.status}, idle {r.idle_seconds:.0f}s, "
              f"{r.chunks_done}/{r.chunk_count} chunks done): {r.action}"
              + (f", now {r.job_status}" if r.job_status else "")
              + (f": {r.error}" if r.error else ""))
    if failed:
        print(f"error: {sum(r.action == RecoveryAction.FAILED for r in results)} of {len(results)} abandoned job(s) "
              f"could not be resumed", file=sys.stderr)
    return EXIT_FAILED if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    recover = sub.add_parser("recover", help="resume abandoned jobs: running with no heartbeat for longer than "
                                             "the lease, or pending for longer than it (ephemeral API by default)")
    recover.add_argument("--lease-seconds", type=float, help="idle this long makes a job abandoned (default "
                         "$CLIENTES_JOB_LEASE_SECONDS or 900)")
    recover.add_argument("--limit", type=int, default=10, help="resume at most N jobs, the longest idle first")
    add_resource_options(recover)
    recover.set_defaults(func=cmd_recover)
