"""The ``clientes-ingest`` command: generate test files, run the ingest flow, resume abandoned jobs,
purge old jobs, inspect jobs, print or apply the schema, provision AWS resources, register blocks and apply
the automations.

Exit codes: 0 success (rejected lines are not failures), 1 the job failed (or its file was refused as
``rejected_file``), 2 bad input or usage, 3 the database is unreachable, 4 (``run``) the file's job is held
by another run that may be alive (``--wait`` waits for it instead). Errors are one line on stderr and
never contain a password.
Requires: nothing beyond the package; ``run``, ``recover`` and ``purge`` use Prefect's ephemeral API unless
PREFECT_API_URL is set.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clientes_ingest.cli import admin, automations, generate, jobs, purge, recover, run, schema
from clientes_ingest.cli.common import CliError
from clientes_ingest.exit_codes import EXIT_INTERRUPTED

COMMANDS = (generate, run, recover, purge, jobs, schema, admin, automations)  # each module adds its subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clientes-ingest", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
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
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
