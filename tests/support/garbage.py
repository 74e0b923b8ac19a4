"""Files that are not a CLIENTES file, or only barely: what the reject guard must refuse (or not)."""

from __future__ import annotations

import random
from pathlib import Path

from clientes_ingest.devtools.generator import generate


def random_bytes(path: Path, size: int = 200_000, seed: int = 1) -> Path:
    """``size`` random bytes (a binary file sent by mistake): nearly every line is an encoding reject."""
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def comma_delimited(path: Path, lines: int = 3000, seed: int = 2) -> Path:
    """A well-formed file with ',' instead of '|' (a wrong export): every line is a field_count reject."""
    generate(path, lines=lines, seed=seed, error_rate=0.0)
    path.write_bytes(path.read_bytes().replace(b"|", b","))
    return path


def x_lines(path: Path, size: int = 1_000_000) -> Path:
    """``x\\n`` repeated: 500k one-letter lines per MB, each a field_count reject."""
    path.write_bytes(b"x\n" * (size // 2))
    return path


def bad_start(path: Path, bad_lines: int = 12_000, good_lines: int = 60_000, seed: int = 3) -> Path:
    """A good file (20% rejects overall is ~30% here) whose first ``bad_lines`` lines are 80% corrupt."""
    head, tail = path.with_suffix(".head"), path.with_suffix(".tail")
    generate(head, lines=bad_lines, seed=seed, error_rate=0.8)
    generate(tail, lines=good_lines, seed=seed + 1, error_rate=0.2)
    path.write_bytes(head.read_bytes() + tail.read_bytes())
    head.unlink()
    tail.unlink()
    return path
