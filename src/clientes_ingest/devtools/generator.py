"""Test-file generator: a ``CLIENTES_IN_MMYY.dat`` like the public challenge's, fast (pure, no Prefect).

Each line is ``nombre|apellido|dni|estado|fechaIngreso|esPep|esSujetoObligado\\n`` with a DNI in
10000000-99999999, estado ``Activo``/``Inactivo``, an en-US date ``M/D/YYYY`` (no zero padding) within the
last 10 years, and ``true``/``false`` flags. With probability ``error_rate`` a line is corrupted by one of
three kinds, chosen uniformly: a bad fechaIngreso (``0000-00-00``, ``99/99/9999`` or empty), empty esPep
and esSujetoObligado, or nombre and apellido of 50 lorem words each.

Lines are built a batch at a time as Arrow string arrays (pool lookups by random index, one element-wise
join), and the joined array's data buffer, which is exactly the batch's bytes, is written as is: about
1 GB in well under a minute on two cores, in bounded memory. Requires: numpy, pyarrow.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BATCH_LINES = 65_536
DNI_MIN, DNI_MAX = 10_000_000, 99_999_999
LOREM_WORDS_PER_NAME = 50
YEARS_BACK = 10

NOMBRES = (
    "María", "José", "Juan", "Ana", "Lucía", "Sofía", "Martín", "Matías", "Valentina", "Camila",
    "Agustín", "Joaquín", "Tomás", "Nicolás", "Florencia", "Micaela", "Julián", "Benjamín", "Inés", "Raúl",
    "Ramón", "Néstor", "Héctor", "Mónica", "Verónica", "Andrés", "Germán", "Sebastián", "Zoë", "François",
    "Søren", "Chloé", "Renée", "Noël", "Iñaki", "Begoña", "Ángela", "Óscar", "Pilar", "Carlos",
    "Laura", "Pedro", "D'Andre", "O'Neil", "Jean-Luc", "Mary Jo", "Ma'ayan", "Emilia", "Bruno", "Elena",
)  # fmt: skip
APELLIDOS = (
    "Gómez", "Núñez", "Pérez", "González", "Rodríguez", "Fernández", "López", "Martínez", "Sánchez", "Díaz",
    "Álvarez", "Romero", "Suárez", "Giménez", "Domínguez", "Ibáñez", "Muñoz", "Peña", "Ordóñez", "Castaño",
    "O'Kon", "D'Amore", "O'Connell", "O'Reilly", "D'Angelo", "O'Hara", "Dell'Acqua", "Von Rueden",
    "Müller", "Schäfer", "Lefèvre", "Brontë", "Kovačević", "Wiśniewski", "Ørsted", "Çelik", "Nguyễn",
    "García Márquez", "de la Cruz", "Herrera", "Silva", "Torres", "Acosta", "Benítez", "Medina", "Ruiz",
    "Moreno", "Aguirre", "Ríos", "Sosa",
)  # fmt: skip
LOREM = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim",
    "veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea",
    "commodo", "consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate", "velit", "esse",
    "cillum", "eu", "fugiat", "nulla", "pariatur", "excepteur", "sint", "occaecat", "cupidatat", "non",
    "proident", "sunt", "culpa", "qui", "officia", "deserunt", "mollit", "anim", "id", "est", "laborum",
)  # fmt: skip
ESTADOS = ("Activo", "Inactivo")
BAD_DATES = ("0000-00-00", "99/99/9999", "")

# Corruption kinds, chosen uniformly among corrupt lines.
BAD_DATE, EMPTY_FLAGS, LOREM_NAMES = 1, 2, 3


@dataclass(frozen=True)
class GenerateStats:
    """What :func:`generate` wrote."""

    path: Path
    lines: int
    corrupt_lines: int
    bytes: int


def date_pool(today: dt.date, years: int = YEARS_BACK) -> list[str]:
    """Every day from ``years`` before ``today`` to ``today``, formatted M/D/YYYY (no zero padding)."""
    try:
        first = today.replace(year=today.year - years)
    except ValueError:  # 29 February in a year that has none
        first = today.replace(year=today.year - years, day=28)
    days = (today - first).days + 1
    return [f"{d.month}/{d.day}/{d.year}" for d in (first + dt.timedelta(n) for n in range(days))]


class _BatchBuilder:
    """Draws and assembles batches of lines from one seeded random generator."""

    def __init__(self, rng: np.random.Generator, error_rate: float, today: dt.date) -> None:
        self.rng = rng
        self.error_rate = error_rate
        self.nombres = pa.array(NOMBRES, pa.string())
        self.apellidos = pa.array(APELLIDOS, pa.string())
        self.lorem = pa.array(LOREM, pa.string())
        self.estados = pa.array(ESTADOS, pa.string())
        dates = date_pool(today)
        self.n_dates = len(dates)
        self.dates = pa.array(dates + list(BAD_DATES), pa.string())
        self.flags = pa.array(["true", "false", ""], pa.string())
        # The line terminator rides on the last field, so the joined array's data is the file's bytes.
        self.last_flags = pa.array(["true\n", "false\n", "\n"], pa.string())

    def build(self, n: int) -> tuple[pa.StringArray, np.ndarray]:
        """``n`` lines as one string array (each ending in ``\\n``), and which of them are corrupt."""
        rng = self.rng
        corrupt = rng.random(n) < self.error_rate
        kind = np.where(corrupt, rng.integers(BAD_DATE, LOREM_NAMES + 1, n), 0)
        nombre_idx = rng.integers(0, len(NOMBRES), n)
        apellido_idx = rng.integers(0, len(APELLIDOS), n)
        dni = pa.array(rng.integers(DNI_MIN, DNI_MAX + 1, n), pa.int64())
        estado_idx = rng.integers(0, len(ESTADOS), n)
        date_idx = rng.integers(0, self.n_dates, n)
        pep_idx = rng.integers(0, 2, n)
        so_idx = rng.integers(0, 2, n)

        bad_date = kind == BAD_DATE
        date_idx[bad_date] = self.n_dates + rng.integers(0, len(BAD_DATES), int(bad_date.sum()))
        empty_flags = kind == EMPTY_FLAGS
        pep_idx[empty_flags] = 2
        so_idx[empty_flags] = 2

        nombres, apellidos = self.nombres, self.apellidos
        lorem_rows = np.flatnonzero(kind == LOREM_NAMES)
        if lorem_rows.size:
            # Append the lorem names after the pool and point the corrupt rows at them.
            nombres = pa.concat_arrays([nombres, self._lorem_names(lorem_rows.size)])
            apellidos = pa.concat_arrays([apellidos, self._lorem_names(lorem_rows.size)])
            extra = np.arange(lorem_rows.size)
            nombre_idx[lorem_rows] = len(NOMBRES) + extra
            apellido_idx[lorem_rows] = len(APELLIDOS) + extra

        lines = pc.binary_join_element_wise(
            nombres.take(nombre_idx),
            apellidos.take(apellido_idx),
            pc.cast(dni, pa.string()),
            self.estados.take(estado_idx),
            self.dates.take(date_idx),
            self.flags.take(pep_idx),
            self.last_flags.take(so_idx),
            "|",
        )
        return lines, corrupt

    def _lorem_names(self, count: int) -> pa.Array:
        words = self.lorem.take(self.rng.integers(0, len(LOREM), count * LOREM_WORDS_PER_NAME))
        offsets = pa.array(np.arange(count + 1, dtype=np.int32) * LOREM_WORDS_PER_NAME)
        return pc.binary_join(pa.ListArray.from_arrays(offsets, words), " ")


def _line_bytes(lines: pa.StringArray) -> tuple[pa.Buffer, np.ndarray]:
    """The contiguous bytes of ``lines`` (no copy) and the end offset of each line within them."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    start = int(offsets[0])
    return lines.buffers()[2].slice(start, int(offsets[-1]) - start), offsets[1:] - start


def generate(
    path: str | Path,
    *,
    lines: int | None = None,
    size: int | None = None,
    error_rate: float = 0.2,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
    today: dt.date | None = None,
) -> GenerateStats:
    """Write a test file of ``lines`` lines, or of lines until ``size`` bytes are reached.

    In size mode the file stops with the first line that reaches ``size`` bytes. The same ``seed`` (and
    ``today``, which anchors the 10-year date window; default: the current date) gives the same bytes.
    ``progress`` is called with the bytes written so far after each batch. The file appears atomically.
    """
    if (lines is None) == (size is None):
        raise ValueError("pass exactly one of lines= or size=")
    if lines is not None and lines < 0:
        raise ValueError(f"lines must be >= 0, got {lines}")
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0 bytes, got {size}")
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be between 0 and 1, got {error_rate}")

    path = Path(path)
    builder = _BatchBuilder(np.random.default_rng(seed), error_rate, today or dt.date.today())
    written = total_lines = total_corrupt = 0
    tmp = path.with_name(f".{path.name}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tmp.open("wb") as out:
            while True:
                want = BATCH_LINES if lines is None else min(BATCH_LINES, lines - total_lines)
                if want <= 0 or (size is not None and written >= size):
                    break
                batch, corrupt = builder.build(want)
                data, ends = _line_bytes(batch)
                if size is not None and written + len(data) >= size:
                    keep = int(np.searchsorted(ends, size - written)) + 1  # first line end >= size
                    batch = batch.slice(0, keep)
                    corrupt = corrupt[:keep]
                    data, ends = _line_bytes(batch)
                out.write(data)
                written += len(data)
                total_lines += len(batch)
                total_corrupt += int(corrupt.sum())
                if progress is not None:
                    progress(written)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return GenerateStats(path=path, lines=total_lines, corrupt_lines=total_corrupt, bytes=written)
