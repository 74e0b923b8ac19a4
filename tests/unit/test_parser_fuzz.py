"""Property tests: the scalar reference ``parse_line`` never raises, and the vectorised ``parse_block``
agrees with it line by line (same rows, same rejects and reasons, same line numbers) on arbitrary bytes
and on plausible lines with random corruption.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientes_ingest.parser import parse_block
from clientes_ingest.rules import BOM, REASONS, ParsedBlock, Reject, ValidRow, parse_line

# RECORDS_FUZZ_EXAMPLES=20000 for a long soak; the default keeps the file at a few seconds.
EXAMPLES = int(os.environ.get("RECORDS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def no_newline(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"")


# Arbitrary bytes, arbitrary text, and bytes rich in the separators and whitespace the parser cares about.
raw_lines = st.one_of(
    st.binary(max_size=120).map(no_newline),
    st.text(max_size=120).map(lambda s: no_newline(s.encode("utf-8", "surrogatepass"))),
    st.lists(st.sampled_from([b"|", b" ", b"\r", b"\t", b"\x00", b"\xff", b"\xc3", b"\xa9", b"1", b"/", b"a"])).map(
        b"".join
    ),
)

whitespace = st.sampled_from(["", " ", "\t", "  ", "\x0b", "\r", "\u00a0"])
nombres = st.sampled_from(
    ["María", "José", "María José", "O'Kon", '"Ana"', "Ñandú", "", "ñ" * 49, "a" * 60, "\ufeffAna"]
)
dnis = st.one_of(
    st.integers(min_value=-10, max_value=2**64).map(str),
    st.sampled_from(["", "0", "00012", "9223372036854775807", "9223372036854775808", "12a", "٤٥", "1 2"]),
)
estados = st.sampled_from(["Activo", "Inactivo", "activo", "ACTIVO", "Inactiva", ""])
fechas = st.one_of(
    st.builds(
        lambda m, d, y, pad: f"{m:0{pad}d}/{d:0{pad}d}/{y}",
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(1890, 2110),
        st.sampled_from([1, 2, 3]),
    ),
    st.sampled_from(["0000-00-00", "99/99/9999", "", "2/29/2024", "2/29/2023", "2/30/2020", "1/1/20"]),
    st.text(alphabet="0123456789/-", max_size=11),
)
flags = st.sampled_from(["true", "false", "TRUE", "False", "", "yes", "1", "tru", "\u212arue"])


@st.composite
def plausible_lines(draw: st.DrawFn) -> bytes:
    fields = [draw(nombres), draw(nombres), draw(dnis), draw(estados), draw(fechas), draw(flags), draw(flags)]
    fields = [draw(whitespace) + f + draw(whitespace) for f in fields]
    count = draw(st.sampled_from([7, 7, 7, 7, 6, 8]))
    fields = (fields + ["x"])[:count]
    raw = "|".join(fields).encode()
    corruption = draw(st.sampled_from(["none", "none", "byte", "cut", "cr"]))
    if corruption == "byte" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0x80, 0xFF))]) + raw[at + 1 :]
    elif corruption == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif corruption == "cr":
        raw += b"\r"
    return no_newline(raw)


any_line = st.one_of(raw_lines, plausible_lines())


def outcomes(block: ParsedBlock) -> dict[int, ValidRow | Reject]:
    result: dict[int, ValidRow | Reject] = {}
    for row in block.valid.to_pylist():
        number = row.pop("line_number")
        result[number] = ValidRow(**row)
    for row in block.rejects.to_pylist():
        number = row.pop("line_number")
        result[number] = Reject(**row)
    return result


@FUZZ
@given(any_line)
def test_parse_line_never_raises(raw: bytes) -> None:
    result = parse_line(raw)
    assert result is None or isinstance(result, ValidRow | Reject)
    if isinstance(result, Reject):
        assert result.reason in REASONS
        assert result.raw_length == len(raw.removesuffix(b"\r"))
        assert "\x00" not in result.raw_line


@FUZZ
@given(
    lines=st.lists(any_line, min_size=1, max_size=25),
    first_line=st.integers(1, 10**9),
    trailing_newline=st.booleans(),
    file_start=st.booleans(),
    bom=st.booleans(),
)
def test_parse_block_agrees_with_parse_line(
    lines: list[bytes], first_line: int, trailing_newline: bool, file_start: bool, bom: bool
) -> None:
    if bom:
        lines = [BOM + lines[0], *lines[1:]]
    if not lines[-1]:
        trailing_newline = True  # otherwise an empty last line is no line at all
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    block = parse_block(data, first_line, file_start=file_start)

    expected: dict[int, ValidRow | Reject] = {}
    blank = 0
    for i, raw in enumerate(lines):
        result = parse_line(raw, file_start=file_start and i == 0)
        if result is None:
            blank += 1
        else:
            expected[first_line + i] = result
    assert block.lines == len(lines)
    assert block.blank_lines == blank
    assert outcomes(block) == expected
    assert block.valid.column("line_number").to_pylist() == sorted(block.valid.column("line_number").to_pylist())
    assert block.rejects.column("line_number").to_pylist() == sorted(block.rejects.column("line_number").to_pylist())


@settings(max_examples=max(20, EXAMPLES // 15), deadline=None)
@given(st.lists(plausible_lines(), min_size=1, max_size=5), st.integers(200, 400))
def test_long_lines_agree(lines: list[bytes], repeat: int) -> None:
    # Lines far longer than the 256-character preview, with multi-byte and invalid bytes near the cut.
    long_lines = [raw * repeat for raw in lines]
    block = parse_block(b"\n".join(long_lines), 1)
    assert outcomes(block) == {
        i + 1: result for i, raw in enumerate(long_lines) if (result := parse_line(raw)) is not None
    }
