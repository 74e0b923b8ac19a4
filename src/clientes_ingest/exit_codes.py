"""Exit codes of every ``clientes-ingest`` command (the CLI and the dev stack), defined once."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the job (or a service of the dev stack) failed
EXIT_USAGE = 2  # bad input or usage
EXIT_DB = 3  # the database is unreachable
EXIT_HELD = 4  # the file is being loaded by another run that may be alive (run without --wait)
EXIT_INTERRUPTED = 130  # Ctrl-C
