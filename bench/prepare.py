"""Inputs of the benchmarks, made once and cached outside the repository.

* the generated CLIENTES files (seed 42) of a given size;
* the "pre-cleaned" valid rows of a file, as the CSV the PostgreSQL COPY writer sends
  (``JobId, LineNumber, NombreCompleto, DNI, Estado, FechaIngreso, EsPEP, EsSujetoObligado``):
  the input of the limit measurements.

Cache directory: ``$CLIENTES_BENCH_CACHE`` or ``~/.cache/clientes-ingest``. Requires: disk space
(a 5 GB file and about 2.7 GB of clean rows).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.csv as pacsv

from clientes_ingest.chunks import LineBlock, iter_line_blocks
from clientes_ingest.db import CLIENTES_COLUMNS, VALID_FIELDS
from clientes_ingest.devtools.generator import generate
from clientes_ingest.parser import parse_block
from clientes_ingest.settings import parse_size
from clientes_ingest.writers import with_constants

SEED = 42
LIMIT_JOB_ID = 1


def cache_dir() -> Path:
    """Where generated inputs live (never inside the repository)."""
    path = Path(os.environ.get("CLIENTES_BENCH_CACHE", Path.home() / ".cache" / "clientes-ingest")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_file(size: str) -> Path:
    """The generated file of ``size`` (e.g. ``1GB``, seed 42), generated on first use."""
    path = cache_dir() / f"CLIENTES_IN_{size.upper()}.dat"
    if not path.exists():
        tmp = path.with_suffix(".part")
        generate(tmp, size=parse_size(size), seed=SEED)
        tmp.replace(path)
    return path


def ensure_clean(path: Path) -> Path:
    """The valid rows of ``path`` as COPY-ready CSV (job id 1), made with the project's own parser."""
    out = path.with_suffix(".clean.csv")
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    tmp = out.with_suffix(".part")
    with path.open("rb") as source, tmp.open("wb") as sink:
        pieces = iter(lambda: source.read(8 << 20), b"")
        for item in iter_line_blocks(pieces, 1, block_size=8 << 20, max_line_bytes=1 << 20, file_start=True):
            if isinstance(item, LineBlock):
                parsed = parse_block(item.data, item.first_line, file_start=item.file_start)
                table = with_constants(parsed.valid, VALID_FIELDS, [("j", LIMIT_JOB_ID)])
                pacsv.write_csv(table.rename_columns(list(CLIENTES_COLUMNS)), sink, options)
    tmp.replace(out)
    return out
