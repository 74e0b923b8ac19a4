"""The vectorised block parser: a block of whole lines in, Arrow tables of valid rows and rejects out.

The hot path of every chunk, with ``pyarrow.compute`` / numpy and no Python loop per line (except for
the rare block holding invalid UTF-8, where only the bad lines are located in Python). The rules, the
reason codes and the scalar reference they are checked against (``rules.parse_line``) live in
``clientes_ingest.rules``; tests cross-check the two on every case.
Requires: pyarrow, numpy.
"""

from __future__ import annotations

import codecs

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clientes_ingest.reasons import RULE_ORDER
from clientes_ingest.rules import (
    BOM,
    FIELD_COUNT,
    MAX_BIGINT,
    MAX_BLOCK_BYTES,
    MAX_NOMBRE_COMPLETO_CHARS,
    MAX_YEAR,
    MIN_YEAR,
    RAW_PREVIEW_CHARS,
    REJECT_SCHEMA,
    VALID_SCHEMA,
    WHITESPACE,
    ParsedBlock,
    empty_table,
)

# Codes used in the per-line int8 array of parse_block: 0 valid, -1 blank, i+1 for RULE_ORDER[i].
_CODE = {reason: i + 1 for i, reason in enumerate(RULE_ORDER)}
_REASON_NAMES = pa.array(RULE_ORDER, pa.string())


def count_lines(data: bytes) -> int:
    """Number of lines in a block: every ``\\n`` ends one, plus an unterminated last line."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _split_lines(data: bytes) -> pa.Array:
    """Binary array of the lines of ``data`` (terminators already normalised to a bare ``\\n``)."""
    # Wrap the bytes without copying them: a one-element binary array.
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int32))
    whole = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)])
    lines = pc.split_pattern(whole, b"\n").flatten()
    return lines.slice(0, len(lines) - 1) if data.endswith(b"\n") else lines


def _bad_utf8_lines(data: bytes) -> np.ndarray:
    """Indices of the lines holding invalid UTF-8, found by jumping from one decode error to the next."""
    line_ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    bad: list[int] = []
    with memoryview(data) as view:
        pos = 0
        while pos < len(data):
            try:
                codecs.utf_8_decode(view[pos:], "strict", True)
                break
            except UnicodeDecodeError as exc:
                line = int(np.searchsorted(line_ends, pos + exc.start))
                bad.append(line)
                pos = int(line_ends[line]) + 1 if line < len(line_ends) else len(data)
    return np.array(bad, dtype=np.int64)


class _FieldBytes:
    """Byte-level view of a flat string array: reads the 8 bytes at any offset with one vectorised load.

    Comparing short fields (``true``, ``Activo``, dates) as little-endian integers avoids both a copy of
    each column and a numpy gather per byte.
    """

    PAD = 16

    def __init__(self, strings: pa.Array) -> None:
        _, offsets_buffer, data_buffer = strings.buffers()
        first = strings.offset
        offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[first : first + len(strings) + 1]
        values = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
        # Zero padding on both sides lets every load below stay inside the buffer.
        padded = np.zeros(len(values) + 2 * self.PAD, dtype=np.uint8)
        padded[self.PAD : self.PAD + len(values)] = values
        self._u64 = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
        self.start = offsets[:-1].astype(np.int64) + self.PAD
        self.length = np.diff(offsets).astype(np.int64)

    def equals(self, fields: slice, word: str, *, fold: bool = False) -> np.ndarray:
        """Mask of ``fields`` equal to ``word`` (<= 8 ASCII bytes); ``fold``: ASCII case-insensitive."""
        raw = word.encode("ascii")
        size = len(raw)
        assert size <= 8 and (not fold or raw.isalpha())
        keep = np.uint64((1 << (8 * size)) - 1)
        target = np.uint64(int.from_bytes(raw, "little"))
        loaded = self._u64[self.start[fields]] & keep
        if fold:
            # OR 0x20 lower-cases an ASCII letter and merges no other byte with one.
            lower = np.uint64(int.from_bytes(b"\x20" * size, "little"))
            loaded, target = loaded | lower, target | lower
        return (self.length[fields] == size) & (loaded == target)

    def last10(self, fields: slice) -> np.ndarray:
        """(n, 10) uint8 matrix of each field's last 10 bytes; bytes before a shorter field are garbage."""
        end = self.start[fields] + self.length[fields]
        n = len(end)
        head = self._u64[end - 10].view(np.uint8).reshape(n, 8)[:, :2]
        tail = self._u64[end - 8].view(np.uint8).reshape(n, 8)
        return np.concatenate([head, tail], axis=1)


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of valid Gregorian dates with year >= 0 (H. Hinnant's days_from_civil)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _parse_dates(last10: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ok, days since epoch) of M/D/YYYY fields from their last 10 bytes; no strptime leniency."""
    # Right-aligned in 10 bytes: YYYY at 6..9, '/' at 5, D or DD ending at 4, '/', then M or MM. Bytes
    # before the field (index < 10 - length) belong to other fields: the cases below never read them.
    c = [last10[:, k] for k in range(10)]
    d = [(x >= 0x30) & (x <= 0x39) for x in c]
    v = [x.astype(np.int32) - 0x30 for x in c]
    two_digit_day = d[3]
    shape_ok = np.where(
        two_digit_day,  # MM/DD/YYYY (length 10) or M/DD/YYYY (9)
        (c[2] == 0x2F) & (length >= 9) & d[1] & ((length == 9) | d[0]),
        (c[3] == 0x2F) & (length <= 9) & d[2] & ((length == 8) | d[1]),  # MM/D/YYYY (9) or M/D/YYYY (8)
    )
    ok = shape_ok & (length >= 8) & (length <= 10) & (c[5] == 0x2F) & d[4] & d[6] & d[7] & d[8] & d[9]
    month = np.where(
        two_digit_day,
        np.where(length == 10, v[0] * 10 + v[1], v[1]),
        np.where(length == 9, v[1] * 10 + v[2], v[2]),
    )
    day = np.where(two_digit_day, v[3] * 10 + v[4], v[4])
    year = v[6] * 1000 + v[7] * 100 + v[8] * 10 + v[9]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= (month >= 1) & (month <= 12) & (year >= MIN_YEAR) & (year <= MAX_YEAR)
    max_day = _DAYS_IN_MONTH[np.where(ok, month, 0)] + ((month == 2) & leap)
    ok &= (day >= 1) & (day <= max_day)
    return ok, _days_from_civil(np.where(ok, year, 1970), np.where(ok, month, 1), np.where(ok, day, 1))


def _nombre_completo_too_long(flat: pa.Array, length: np.ndarray) -> np.ndarray:
    """Mask of rows whose nombre + ' ' + apellido exceeds the limit, counted in UTF-16 code units.

    SQL Server's NVARCHAR(100) holds 100 UTF-16 units: a character outside the BMP (4 UTF-8 bytes, e.g.
    an emoji) takes two. Counting the same way here keeps every target database loading the same rows.
    """
    name_bytes = length[:, 0] + length[:, 1]
    too_long = name_bytes + 1 > MAX_NOMBRE_COMPLETO_CHARS
    # A UTF-16 unit takes at least one UTF-8 byte, and a character at most 3 bytes per unit (4 bytes
    # are 2 units): only rows over the limit in bytes but under 3x it can still fit, and need counting.
    suspects = np.flatnonzero(too_long & (name_bytes <= 3 * (MAX_NOMBRE_COMPLETO_CHARS - 1)))
    if len(suspects):
        names = flat.take(pa.array(np.add.outer(suspects * FIELD_COUNT, [0, 1]).ravel()))
        astral = pc.count_substring_regex(names, "[\\x{10000}-\\x{10FFFF}]").to_numpy()
        units = pc.utf8_length(names).to_numpy() + astral
        too_long[suspects] = units.reshape(-1, 2).sum(axis=1) + 1 > MAX_NOMBRE_COMPLETO_CHARS
    return too_long


def _mask(booleans: pa.Array) -> np.ndarray:
    return np.asarray(booleans.to_numpy(zero_copy_only=False), dtype=bool)


def _parse_dnis(dni: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(ok, value) of DNI fields: ASCII digits, 0 < value <= BIGINT max, leading zeros allowed."""
    digits = _mask(pc.ascii_is_decimal(dni))
    significant = pc.utf8_ltrim(dni, characters="0")
    length = pc.binary_length(significant).to_numpy()
    # At equal digit counts, string order is numeric order.
    below_max = _mask(pc.less_equal(significant, str(MAX_BIGINT)))
    ok = digits & (length > 0) & ((length < 19) | ((length == 19) & below_max))
    value = pc.cast(pc.if_else(pa.array(ok), significant, "0"), pa.int64()).to_numpy()
    return ok, value


def parse_block(data: bytes, first_line: int, *, file_start: bool = False) -> ParsedBlock:
    """Parse whole lines into valid rows and rejects, both in line order.

    ``data`` holds whole lines: each ends with ``b"\\n"`` except possibly the file's last line. Line ``i``
    of the block (0-based) has line number ``first_line + i``. ``file_start=True``: strip a UTF-8 BOM
    at the very beginning.
    """
    if not data:
        return ParsedBlock(empty_table(VALID_SCHEMA), empty_table(REJECT_SCHEMA), 0, 0)
    if len(data) > MAX_BLOCK_BYTES:
        raise ValueError(f"block of {len(data)} bytes is too large: parse at most {MAX_BLOCK_BYTES} at a time")
    data = _normalize_newlines(data, file_start)
    lines_bin = _split_lines(data)
    n_lines = len(lines_bin)
    codes = np.zeros(n_lines, dtype=np.int8)  # 0 valid, -1 blank, else _CODE of the reject reason
    lines = _decode_lines(data, lines_bin, codes)
    split = _split_fields(lines, codes)
    rows = np.flatnonzero(codes == 0)
    with_7 = split if len(rows) == n_lines else split.take(pa.array(rows))
    valid = _check_rows(with_7, rows, codes, first_line)
    rejects = _reject_table(codes, lines, pc.binary_length(lines_bin), first_line)
    return ParsedBlock(valid, rejects, int(np.count_nonzero(codes == -1)), n_lines)


def _normalize_newlines(data: bytes, file_start: bool) -> bytes:
    """Strip a leading BOM (``file_start``) and the CR of every CRLF."""
    if file_start and data.startswith(BOM):
        data = data[len(BOM) :]  # a file holding only a BOM still counts one (blank) line
    # Drop the CR of CRLF in one C pass; a lone CR inside a line stays data.
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if data.endswith(b"\r"):
            # The file's unterminated last line: terminate it instead of dropping the byte, so a last
            # line holding just "\r" still counts as a (blank) line.
            data = data[:-1] + b"\n"
    return data


def _decode_lines(data: bytes, lines_bin: pa.Array, codes: np.ndarray) -> pa.Array:
    """The lines as UTF-8 strings; marks lines that are not UTF-8 or hold NUL as ``encoding`` in ``codes``."""
    try:
        lines = lines_bin.cast(pa.string())
    except pa.ArrowInvalid:
        # Rare: find the bad lines in Python, then stand in their backslash-escaped text so the rest
        # stays vectorised (and their raw_line preview comes out right on the way).
        bad = _bad_utf8_lines(data)
        codes[bad] = _CODE["encoding"]
        stand_ins = [lines_bin[int(i)].as_py().decode("utf-8", "backslashreplace").encode() for i in bad]
        lines = pc.replace_with_mask(lines_bin, pa.array(codes != 0), pa.array(stand_ins, pa.binary()))
        lines = lines.cast(pa.string())
    if b"\x00" in data:
        # PostgreSQL cannot store NUL in text and SQL Server would keep it as junk: an encoding reject.
        has_nul = _mask(pc.match_substring(lines, "\x00"))
        codes[has_nul & (codes == 0)] = _CODE["encoding"]
    return lines


def _split_fields(lines: pa.Array, codes: np.ndarray) -> pa.Array:
    """The ``|``-separated fields of each line; marks blank lines (-1) and ``field_count`` rejects in ``codes``."""
    split = pc.split_pattern(lines, "|")
    n_fields = pc.list_value_length(split).to_numpy()
    others = np.flatnonzero((n_fields != FIELD_COUNT) & (codes == 0))
    if len(others):
        # Usually few lines: blank ones (a single field of whitespace) and field_count rejects.
        stripped = pc.ascii_trim(lines.take(pa.array(others)), characters=WHITESPACE)
        blank = (pc.binary_length(stripped).to_numpy() == 0) & (n_fields[others] == 1)
        codes[others] = np.where(blank, -1, _CODE["field_count"])
    return split


def _check_rows(with_7: pa.Array, rows: np.ndarray, codes: np.ndarray, first_line: int) -> pa.Table:
    """Apply the field rules to the seven-field ``rows``: their reject codes go to ``codes``, the valid rows
    come back as a ``VALID_SCHEMA`` table."""
    # All fields of those rows, trimmed, in one flat row-major array: field k of row i is at 7 * i + k.
    # ascii_trim is safe on UTF-8: bytes of a multi-byte character are never ASCII.
    flat = pc.ascii_trim(with_7.flatten(), characters=WHITESPACE)
    fields = _FieldBytes(flat)
    length = fields.length.reshape(-1, FIELD_COUNT)

    def column(k: int) -> slice:
        return slice(k, None, FIELD_COUNT)

    def take_field(k: int, where: np.ndarray) -> pa.Array:
        return flat.take(pa.array(where * FIELD_COUNT + k))

    dni_ok, dni = _parse_dnis(take_field(2, np.arange(len(rows))))
    estado_ok = fields.equals(column(3), "Activo") | fields.equals(column(3), "Inactivo")
    date_ok, days = _parse_dates(fields.last10(column(4)), length[:, 4])
    pep_true, pep_false = (
        fields.equals(column(5), "true", fold=True),
        fields.equals(column(5), "false", fold=True),
    )
    so_true, so_false = (
        fields.equals(column(6), "true", fold=True),
        fields.equals(column(6), "false", fold=True),
    )
    so_empty = length[:, 6] == 0

    # np.select takes the first true condition: the order here is the precedence of RULE_ORDER.
    codes[rows] = np.select(
        [
            (length[:, 0] == 0) | (length[:, 1] == 0),
            _nombre_completo_too_long(flat, length),
            ~dni_ok,
            ~estado_ok,
            ~date_ok,
            ~(pep_true | pep_false),
            ~(so_true | so_false | so_empty),
        ],
        [_CODE[reason] for reason in RULE_ORDER[2:]],
        0,
    )

    keep = np.flatnonzero(codes[rows] == 0)
    valid = pa.table(
        [
            pa.array(rows[keep] + first_line, pa.int64()),
            pc.binary_join_element_wise(take_field(0, keep), take_field(1, keep), " "),
            pa.array(dni[keep], pa.int64()),
            take_field(3, keep),
            pa.array(days[keep].astype(np.int32), pa.date32()),
            pa.array(pep_true[keep], pa.bool_()),
            pa.array(so_true[keep], pa.bool_(), mask=so_empty[keep]),
        ],
        schema=VALID_SCHEMA,
    )
    return valid


def _reject_table(codes: np.ndarray, lines: pa.Array, raw_length: pa.Array, first_line: int) -> pa.Table:
    index = pa.array(np.flatnonzero(codes > 0))
    # Cut to 256 characters before replacing NUL so the replace never scans a long line.
    head = pc.utf8_slice_codeunits(lines.take(index), 0, RAW_PREVIEW_CHARS)
    preview = pc.utf8_slice_codeunits(pc.replace_substring(head, "\x00", "\\x00"), 0, RAW_PREVIEW_CHARS)
    return pa.table(
        [
            pc.add(pc.cast(index, pa.int64()), first_line),
            _REASON_NAMES.take(pa.array(codes[index.to_numpy()] - 1)),
            preview,
            pc.cast(raw_length.take(index), pa.int64()),
        ],
        schema=REJECT_SCHEMA,
    )
