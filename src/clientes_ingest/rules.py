"""Line format and validation rules of ``CLIENTES_IN_MMYY.dat`` (pure: pyarrow, no Prefect).

A line is ``nombre|apellido|dni|estado|fechaIngreso|esPep|esSujetoObligado`` in UTF-8. Two
implementations of the same rules exist:

* ``parser.parse_block`` — the hot path: a block of whole lines in, Arrow tables of valid
  rows and rejects out, vectorised with ``pyarrow.compute`` / numpy.
* :func:`parse_line` (here) — a scalar reference of the same rules for one line, used by tests to
  cross-check ``parse_block``, and by the original-design baseline of the benchmarks.

This module holds what both share: limits, schemas of the result tables, result types, the reject
preview.

Conventions shared by both (see ``docs/reject-codes.md``):

* Lines end with ``\\n``; one trailing ``\\r`` is dropped (CRLF files). ``raw_length`` is the line's
  length in bytes without that terminator (and without the file's BOM on the first line).
* "Whitespace" is ASCII only: space, tab, CR, VT, FF (:data:`WHITESPACE`). Fields and blank lines are
  trimmed of these; non-ASCII spaces (NBSP, U+FEFF...) are data.
* A UTF-8 BOM is stripped only at the start of the file (``file_start=True``). A BOM anywhere else is an
  ordinary character: at the start of a line it becomes part of ``nombre``.
* ``ValidRow`` and ``Reject`` carry no line number: the caller knows it (``parse_block`` tables do).
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from dataclasses import dataclass

import pyarrow as pa

from clientes_ingest.reasons import REASONS, RULE_ORDER  # noqa: F401 - RULE_ORDER: the rules' public names

RAW_PREVIEW_CHARS = 256
MAX_NOMBRE_COMPLETO_CHARS = 100
MAX_BIGINT = 9_223_372_036_854_775_807
MIN_YEAR, MAX_YEAR = 1900, 2100
WHITESPACE = " \t\r\x0b\x0c"
BOM = codecs.BOM_UTF8
FIELD_COUNT = 7
MAX_BLOCK_BYTES = 2**31 - 1  # Arrow string offsets are int32; callers parse a few MiB at a time
ESTADOS = ("Activo", "Inactivo")


VALID_SCHEMA = pa.schema(
    [
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("nombre_completo", pa.string(), nullable=False),
        pa.field("dni", pa.int64(), nullable=False),
        pa.field("estado", pa.string(), nullable=False),
        pa.field("fecha_ingreso", pa.date32(), nullable=False),
        pa.field("es_pep", pa.bool_(), nullable=False),
        pa.field("es_sujeto_obligado", pa.bool_(), nullable=True),
    ]
)
REJECT_SCHEMA = pa.schema(
    [
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw_line", pa.string(), nullable=False),
        pa.field("raw_length", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ValidRow:
    """One valid line (no line number: the caller knows it)."""

    nombre_completo: str
    dni: int
    estado: str
    fecha_ingreso: dt.date
    es_pep: bool
    es_sujeto_obligado: bool | None


@dataclass(frozen=True)
class Reject:
    """One rejected line: reason code (a key of REASONS), preview of the raw line, its length in bytes."""

    reason: str
    raw_line: str
    raw_length: int


@dataclass(frozen=True)
class ParsedBlock:
    """Result of parse_block: ``lines == valid.num_rows + rejects.num_rows + blank_lines``."""

    valid: pa.Table
    rejects: pa.Table
    blank_lines: int
    lines: int


# --------------------------------------------------------------------------------------------------
# Scalar reference
# --------------------------------------------------------------------------------------------------

_DATE_RE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of no rows (``Schema.empty_table`` would import pandas, ~50 MiB in every process)."""
    return pa.Table.from_batches([], schema=schema)


def preview_raw(raw: bytes) -> str:
    """The stored form of a rejected line: first 256 characters, bad bytes and NUL as ``\\xNN``."""
    # A character takes at most 4 bytes, so 4 * 256 bytes always hold the first 256 characters.
    text = raw[: 4 * RAW_PREVIEW_CHARS].decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")[:RAW_PREVIEW_CHARS]


def _parse_bool(value: str) -> bool | None:
    # ASCII-only case folding on purpose: str.lower() folds e.g. U+212A KELVIN SIGN into "k".
    if value.isascii():
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def _parse_date(value: str) -> dt.date | None:
    match = _DATE_RE.fullmatch(value)
    if match is None:
        return None
    month, day, year = (int(g) for g in match.groups())
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _parse_dni(value: str) -> int | None:
    if not (value.isascii() and value.isdigit()):
        return None
    significant = value.lstrip("0")
    # Checking the digit count first also keeps int() away from its 4300-digit limit.
    if not significant or len(significant) > 19:
        return None
    number = int(significant)
    return number if number <= MAX_BIGINT else None


def parse_line(line: bytes, *, file_start: bool = False) -> ValidRow | Reject | None:
    """Scalar reference of the rules for ONE line (without its ``\\n``); None for a blank line."""
    if b"\n" in line:
        raise ValueError("parse_line takes one line without its b'\\n'")
    if file_start and line.startswith(BOM):
        line = line[len(BOM) :]
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return Reject("encoding", preview_raw(line), len(line))
    if "\x00" in text:
        return Reject("encoding", preview_raw(line), len(line))
    if not text.strip(WHITESPACE):
        return None

    def reject(reason: str) -> Reject:
        return Reject(reason, preview_raw(line), len(line))

    fields = text.split("|")
    if len(fields) != FIELD_COUNT:
        return reject("field_count")
    nombre, apellido, dni_text, estado, fecha, pep, sujeto = (f.strip(WHITESPACE) for f in fields)
    if not nombre or not apellido:
        return reject("empty_name")
    nombre_completo = f"{nombre} {apellido}"
    if len(nombre_completo.encode("utf-16-le")) // 2 > MAX_NOMBRE_COMPLETO_CHARS:
        return reject("nombre_completo_length")
    dni = _parse_dni(dni_text)
    if dni is None or dni == 0:
        return reject("dni")
    if estado not in ESTADOS:
        return reject("estado")
    fecha_ingreso = _parse_date(fecha)
    if fecha_ingreso is None:
        return reject("fecha_ingreso")
    es_pep = _parse_bool(pep)
    if es_pep is None:
        return reject("es_pep")
    es_sujeto_obligado = _parse_bool(sujeto)
    if es_sujeto_obligado is None and sujeto:
        return reject("es_sujeto_obligado")
    return ValidRow(nombre_completo, dni, estado, fecha_ingreso, es_pep, es_sujeto_obligado)


def make_reject(line_number: int, reason: str, raw: bytes, raw_length: int) -> pa.Table:
    """A one-row REJECT_SCHEMA table, e.g. for ``line_too_long`` (``raw`` may be just the line's head)."""
    if reason not in REASONS:
        raise ValueError(f"unknown reject reason {reason!r}: use one of {', '.join(REASONS)}")
    return pa.table(
        {
            "line_number": pa.array([line_number], pa.int64()),
            "reason": pa.array([reason], pa.string()),
            "raw_line": pa.array([preview_raw(raw)], pa.string()),
            "raw_length": pa.array([raw_length], pa.int64()),
        },
        schema=REJECT_SCHEMA,
    )
