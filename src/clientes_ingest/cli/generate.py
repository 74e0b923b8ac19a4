"""The ``generate`` command: a test file like the daily one."""

from __future__ import annotations

import argparse
from pathlib import Path

from clientes_ingest.cli.common import CliError
from clientes_ingest.settings import parse_size


def cmd_generate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from clientes_ingest.devtools.generator import generate

    if (args.lines is None) == (args.size is None):
        raise CliError("give exactly one of --lines N or --size SIZE (e.g. --size 1GB)")
    size = parse_size(args.size) if args.size else None
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = sub.add_parser("generate", help="write a test file like the daily CLIENTES file")
    gen.add_argument("file")
    gen.add_argument("--lines", type=int)
    gen.add_argument("--size", help="target size, e.g. 1GB or 500MiB")
    gen.add_argument("--error-rate", type=float, default=0.2)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--quiet", action="store_true")
    gen.set_defaults(func=cmd_generate)
