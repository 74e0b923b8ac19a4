"""Unit tests of the line format and validation rules (clientes_ingest.rules); no Prefect, no IO.

Every single-line case goes through both implementations (``parse_block`` and the scalar reference
``parse_line``) and asserts they agree before checking the expected outcome.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from clientes_ingest.parser import count_lines, parse_block
from clientes_ingest.rules import (
    BOM,
    RAW_PREVIEW_CHARS,
    REASONS,
    REJECT_SCHEMA,
    RULE_ORDER,
    VALID_SCHEMA,
    ParsedBlock,
    Reject,
    ValidRow,
    make_reject,
    parse_line,
)

GOOD = "María|Gómez|45678901|Activo|11/13/2021|true|false"


def line(
    nombre: str = "María",
    apellido: str = "Gómez",
    dni: str = "45678901",
    estado: str = "Activo",
    fecha: str = "11/13/2021",
    pep: str = "true",
    sujeto: str = "false",
) -> bytes:
    return "|".join([nombre, apellido, dni, estado, fecha, pep, sujeto]).encode()


def outcomes(block: ParsedBlock) -> dict[int, ValidRow | Reject]:
    """line_number -> outcome, rebuilt from the block's tables."""
    result: dict[int, ValidRow | Reject] = {}
    for row in block.valid.to_pylist():
        number = row.pop("line_number")
        result[number] = ValidRow(**row)
    for row in block.rejects.to_pylist():
        number = row.pop("line_number")
        result[number] = Reject(**row)
    return result


def check(raw: bytes, *, file_start: bool = False) -> ValidRow | Reject | None:
    """Outcome of one line, asserting parse_block and parse_line agree on it."""
    expected = parse_line(raw, file_start=file_start)
    block = parse_block(raw + b"\n", 7, file_start=file_start)
    assert block.lines == 1
    assert block.blank_lines == (1 if expected is None else 0)
    assert outcomes(block) == ({} if expected is None else {7: expected})
    return expected


def reason(raw: bytes) -> str | None:
    result = check(raw)
    return result.reason if isinstance(result, Reject) else None


# ---- valid lines -------------------------------------------------------------------------------


def test_valid_line_gives_typed_row() -> None:
    assert check(GOOD.encode()) == ValidRow(
        nombre_completo="María Gómez",
        dni=45678901,
        estado="Activo",
        fecha_ingreso=dt.date(2021, 11, 13),
        es_pep=True,
        es_sujeto_obligado=False,
    )


def test_block_tables_have_the_fixed_schemas() -> None:
    block = parse_block(GOOD.encode() + b"\n" + b"x\n", 1)
    assert block.valid.schema == VALID_SCHEMA
    assert block.rejects.schema == REJECT_SCHEMA


def test_accents_and_inner_spaces_are_kept() -> None:
    row = check(line(nombre=" María José ", apellido="Núñez del Río"))
    assert isinstance(row, ValidRow)
    assert row.nombre_completo == "María José Núñez del Río"


def test_quotes_are_ordinary_characters() -> None:
    row = check(line(nombre='"Ana"', apellido="O'Kon"))
    assert isinstance(row, ValidRow)
    assert row.nombre_completo == '"Ana" O\'Kon'


def test_every_field_is_trimmed_of_ascii_whitespace() -> None:
    raw = line(" María\t", "\tGómez ", " 45678901 ", " Activo\x0b", "\x0c11/13/2021 ", " TRUE ", " false\r")
    row = check(raw)
    assert row == ValidRow("María Gómez", 45678901, "Activo", dt.date(2021, 11, 13), True, False)


def test_non_ascii_space_is_data_not_whitespace() -> None:
    assert reason(line(estado="Activo\u00a0")) == "estado"


def test_repeated_dni_is_not_deduplicated() -> None:
    block = parse_block(GOOD.encode() + b"\n" + GOOD.encode() + b"\n", 1)
    assert block.valid.column("dni").to_pylist() == [45678901, 45678901]
    assert block.rejects.num_rows == 0


# ---- field count ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [GOOD + "|", GOOD + "|extra", "María|Gómez|45678901|Activo|11/13/2021|true", "x"])
def test_not_exactly_seven_fields_is_field_count(raw: str) -> None:
    assert reason(raw.encode()) == "field_count"


def test_seven_empty_fields_are_not_blank() -> None:
    assert reason(b"||||||") == "empty_name"


# ---- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("nombre,apellido", [("", "Gómez"), ("María", ""), ("  ", "Gómez"), ("María", "\t")])
def test_empty_name_after_trim(nombre: str, apellido: str) -> None:
    assert reason(line(nombre=nombre, apellido=apellido)) == "empty_name"


def test_nombre_completo_counts_characters_not_bytes() -> None:
    # 50 + 1 + 49 = 100 characters but 199 bytes: still valid, and never truncated.
    row = check(line(nombre="ñ" * 50, apellido="é" * 49))
    assert isinstance(row, ValidRow)
    assert row.nombre_completo == "ñ" * 50 + " " + "é" * 49
    assert reason(line(nombre="ñ" * 50, apellido="é" * 50)) == "nombre_completo_length"


def test_nombre_completo_three_byte_characters_at_the_byte_shortcut_boundary() -> None:
    # Rows up to 3 bytes per unit are counted exactly; past 297 bytes they cannot fit 100 units.
    assert isinstance(check(line(nombre="中" * 50, apellido="文" * 49)), ValidRow)  # 297 bytes, 100 units
    assert reason(line(nombre="中" * 99, apellido="a")) == "nombre_completo_length"  # 298 bytes, 101 units
    assert reason(line(nombre="中" * 50, apellido="文" * 50)) == "nombre_completo_length"  # 300 bytes
    assert reason(line(nombre="😀" * 50, apellido="a")) == "nombre_completo_length"  # 201 bytes, 102 units
    assert isinstance(check(line(nombre="😀" * 49, apellido="a")), ValidRow)  # 197 bytes, 100 units


def test_nombre_completo_ascii_boundary() -> None:
    assert isinstance(check(line(nombre="a" * 60, apellido="b" * 39)), ValidRow)
    assert reason(line(nombre="a" * 60, apellido="b" * 40)) == "nombre_completo_length"


# ---- dni -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dni,value",
    [
        (" 45678901 ", 45678901),
        ("9223372036854775807", 9223372036854775807),
        ("0000000000000000000000012", 12),
        ("000009223372036854775807", 9223372036854775807),
        ("1", 1),
    ],
)
def test_dni_accepted(dni: str, value: int) -> None:
    row = check(line(dni=dni))
    assert isinstance(row, ValidRow)
    assert row.dni == value


@pytest.mark.parametrize(
    "dni",
    ["0", "0000", "-5", "+5", "", "12a", "1 2", "1e5", "4567.8901", "٤٥٦", "９", "9223372036854775808",
     "00009223372036854775808", "99999999999999999999", "1" * 5000],
)  # fmt: skip
def test_dni_rejected(dni: str) -> None:
    assert reason(line(dni=dni)) == "dni"


# ---- estado --------------------------------------------------------------------------------------


@pytest.mark.parametrize("estado", ["Activo", "Inactivo", "  Inactivo  "])
def test_estado_accepted(estado: str) -> None:
    row = check(line(estado=estado))
    assert isinstance(row, ValidRow)
    assert row.estado == estado.strip()


@pytest.mark.parametrize("estado", ["activo", "ACTIVO", "Inactiva", "", "Activo1", "Activ", "Inactivos"])
def test_estado_rejected(estado: str) -> None:
    assert reason(line(estado=estado)) == "estado"


# ---- fechaIngreso --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fecha,date",
    [
        ("8/9/2022", dt.date(2022, 8, 9)),
        ("08/09/2022", dt.date(2022, 8, 9)),
        ("8/09/2022", dt.date(2022, 8, 9)),
        ("08/9/2022", dt.date(2022, 8, 9)),
        ("11/13/2021", dt.date(2021, 11, 13)),
        ("2/29/2024", dt.date(2024, 2, 29)),
        ("2/29/2000", dt.date(2000, 2, 29)),
        ("1/1/1900", dt.date(1900, 1, 1)),
        ("1/1/2100", dt.date(2100, 1, 1)),
        ("12/31/2100", dt.date(2100, 12, 31)),
        ("12/31/1969", dt.date(1969, 12, 31)),
        ("4/30/2020", dt.date(2020, 4, 30)),
        (" 1/2/2003\t", dt.date(2003, 1, 2)),
    ],
)
def test_fecha_accepted(fecha: str, date: dt.date) -> None:
    row = check(line(fecha=fecha))
    assert isinstance(row, ValidRow)
    assert row.fecha_ingreso == date


@pytest.mark.parametrize(
    "fecha",
    ["0000-00-00", "99/99/9999", "", "2/30/2020", "2/29/2023", "2/29/1900", "4/31/2020", "12/31/1899",
     "1/1/2101", "13/1/2020", "0/1/2020", "1/0/2020", "1/32/2020", "00/00/2000", "2020-01-01", "1/1/20",
     "001/1/2020", "1/001/2020", "1/1/02020", "1 /1/2020", "1/1/2020x", "+1/1/2020", "1/1/2020/", "1/1/",
     "/1/2020", "1//2020", "1-1-2020", "١/١/٢٠٢٠", "1/1/2O20", "11/13/2021 00:00"],
)  # fmt: skip
def test_fecha_rejected(fecha: str) -> None:
    assert reason(line(fecha=fecha)) == "fecha_ingreso"


# ---- booleans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [("true", True), ("TRUE", True), ("tRuE", True), ("False", False)])
def test_es_pep_case_insensitive(text: str, value: bool) -> None:
    row = check(line(pep=text))
    assert isinstance(row, ValidRow)
    assert row.es_pep is value


@pytest.mark.parametrize("text", ["", " ", "yes", "1", "0", "t", "truee", "fals", "\u212arue", "null"])
def test_es_pep_required_and_strict(text: str) -> None:
    assert reason(line(pep=text)) == "es_pep"


@pytest.mark.parametrize("text,value", [("", None), ("  ", None), ("FALSE", False), ("True", True)])
def test_es_sujeto_obligado_nullable(text: str, value: bool | None) -> None:
    row = check(line(sujeto=text))
    assert isinstance(row, ValidRow)
    assert row.es_sujeto_obligado is value


def test_null_es_sujeto_obligado_is_null_in_the_table() -> None:
    block = parse_block(line(sujeto="") + b"\n" + line(sujeto="true") + b"\n", 1)
    assert block.valid.column("es_sujeto_obligado").to_pylist() == [None, True]
    assert block.valid.column("es_sujeto_obligado").null_count == 1


@pytest.mark.parametrize("text", ["maybe", "si", "1", "nulL"])
def test_es_sujeto_obligado_rejected(text: str) -> None:
    assert reason(line(sujeto=text)) == "es_sujeto_obligado"


# ---- corruption kinds of the generator -----------------------------------------------------------


@pytest.mark.parametrize("fecha", ["0000-00-00", "99/99/9999", ""])
def test_corrupt_fecha_kind(fecha: str) -> None:
    assert reason(line(fecha=fecha)) == "fecha_ingreso"


def test_corrupt_both_flags_empty_kind() -> None:
    assert reason(line(pep="", sujeto="")) == "es_pep"


def test_corrupt_lorem_names_kind() -> None:
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do " * 5).split()
    raw = line(nombre=" ".join(words), apellido=" ".join(reversed(words)))
    result = check(raw)
    assert isinstance(result, Reject)
    assert result.reason == "nombre_completo_length"
    assert result.raw_line == raw.decode()[:RAW_PREVIEW_CHARS]
    assert result.raw_length == len(raw)


# ---- precedence ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"\xff|" + line(), "encoding"),  # 8 fields too
        (b"\xff", "encoding"),
        (line(nombre="", dni="x", estado="x", fecha="x", pep="x", sujeto="x"), "empty_name"),
        (line(nombre="a" * 200, dni="x", estado="x"), "nombre_completo_length"),
        (line(dni="0", estado="x", fecha="x", pep="x", sujeto="x"), "dni"),
        (line(estado="x", fecha="x", pep="x", sujeto="x"), "estado"),
        (line(fecha="x", pep="x", sujeto="x"), "fecha_ingreso"),
        (line(pep="", sujeto="x"), "es_pep"),
    ],
)
def test_first_failing_rule_wins(raw: bytes, expected: str) -> None:
    assert reason(raw) == expected


def test_reason_codes_are_stable() -> None:
    assert set(REASONS) == {*RULE_ORDER, "line_too_long"}
    assert RULE_ORDER == (
        "encoding",
        "field_count",
        "empty_name",
        "nombre_completo_length",
        "dni",
        "estado",
        "fecha_ingreso",
        "es_pep",
        "es_sujeto_obligado",
    )


# ---- bytes, encodings and line breaks -------------------------------------------------------------


def test_invalid_utf8_is_an_encoding_reject_with_escaped_preview() -> None:
    raw = line(nombre="Mar\xeda").replace("í".encode(), b"\xed")  # a Latin-1 byte in UTF-8 text
    result = check(raw)
    assert isinstance(result, Reject)
    assert result.reason == "encoding"
    assert result.raw_line.startswith("Mar\\xeda|Gómez|")
    assert result.raw_length == len(raw)


def test_invalid_utf8_lines_do_not_disturb_their_neighbours() -> None:
    lines = [GOOD.encode(), b"\xc3(|a|1|Activo|1/1/2000|true|", b"   ", b"\xf0\x28\x8c", GOOD.encode(), b"x\xff"]
    block = parse_block(b"\n".join(lines), 100)
    assert block.lines == 6 and block.blank_lines == 1
    assert block.valid.column("line_number").to_pylist() == [100, 104]
    rejects = block.rejects.to_pylist()
    assert [(r["line_number"], r["reason"]) for r in rejects] == [
        (101, "encoding"),
        (103, "encoding"),
        (105, "encoding"),
    ]
    assert [r["raw_length"] for r in rejects] == [len(lines[1]), len(lines[3]), len(lines[5])]
    assert rejects[2]["raw_line"] == "x\\xff"


def test_a_nul_byte_anywhere_is_an_encoding_reject() -> None:
    # PostgreSQL cannot store NUL in text: a valid row holding one would fail its chunk's load forever.
    for result in (check(line(apellido="Gó\x00mez")), check(line(dni="4567\x008901")), check(b"\x00")):
        assert isinstance(result, Reject) and result.reason == "encoding"
        assert "\x00" not in result.raw_line
    result = check(line(dni="4567\x008901"))
    assert "4567\\x008901" in result.raw_line


def test_crlf_is_tolerated_and_cr_not_counted_in_raw_length() -> None:
    data = GOOD.encode() + b"\r\n" + b"bad\r\n" + GOOD.encode() + b"\r"
    block = parse_block(data, 1)
    assert block.lines == 3 == count_lines(data)
    assert block.valid.column("line_number").to_pylist() == [1, 3]
    assert block.rejects.to_pylist() == [
        {"line_number": 2, "reason": "field_count", "raw_line": "bad", "raw_length": 3}
    ]


def test_lone_cr_inside_a_line_is_not_a_line_break() -> None:
    block = parse_block(line(apellido="Gó\rmez") + b"\n", 1)
    assert block.lines == 1
    assert block.valid.column("nombre_completo").to_pylist() == ["María Gó\rmez"]


def test_only_one_trailing_cr_is_stripped() -> None:
    result = check(b"abc\r\r")
    assert result == Reject("field_count", "abc\r", 4)


def test_bom_stripped_at_file_start_only() -> None:
    data = BOM + GOOD.encode() + b"\n" + BOM + GOOD.encode() + b"\n"
    first = parse_block(data, 1, file_start=True)
    assert first.valid.column("nombre_completo").to_pylist() == ["María Gómez", "\ufeffMaría Gómez"]
    # Without file_start (a later block) the BOM is an ordinary character and stays in nombre.
    later = parse_block(data, 1)
    assert later.valid.column("nombre_completo").to_pylist() == ["\ufeffMaría Gómez"] * 2
    assert check(BOM + GOOD.encode(), file_start=True) == check(GOOD.encode())


def test_bom_raw_length_excludes_stripped_bom() -> None:
    block = parse_block(BOM + b"bad\n", 1, file_start=True)
    assert block.rejects.to_pylist() == [
        {"line_number": 1, "reason": "field_count", "raw_line": "bad", "raw_length": 3}
    ]


def test_no_trailing_newline() -> None:
    data = GOOD.encode() + b"\n" + line(dni="7")
    block = parse_block(data, 1)
    assert block.lines == 2 == count_lines(data)
    assert block.valid.column("dni").to_pylist() == [45678901, 7]


def test_blank_and_whitespace_only_lines_are_counted_apart() -> None:
    data = b"\n   \n\t \r\n" + GOOD.encode() + b"\n\x0b\x0c\n"
    block = parse_block(data, 1)
    assert (block.lines, block.blank_lines, block.valid.num_rows, block.rejects.num_rows) == (5, 4, 1, 0)
    assert block.valid.column("line_number").to_pylist() == [4]


@pytest.mark.parametrize("data", [b"\n\r", b"\r", b"\r\n\r"])
def test_unterminated_last_line_of_only_cr_is_a_blank_line(data: bytes) -> None:
    block = parse_block(data, 1)
    assert block.lines == count_lines(data) == block.blank_lines


def test_file_of_only_a_bom_is_one_blank_line() -> None:
    block = parse_block(BOM, 1, file_start=True)
    assert (block.lines, block.blank_lines) == (1, 1) == (count_lines(BOM), 1)
    assert parse_line(BOM, file_start=True) is None


def test_empty_block() -> None:
    block = parse_block(b"", 1)
    assert (block.lines, block.blank_lines, block.valid.num_rows, block.rejects.num_rows) == (0, 0, 0, 0)
    assert block.valid.schema == VALID_SCHEMA and block.rejects.schema == REJECT_SCHEMA


def test_block_with_only_rejects_and_blanks() -> None:
    block = parse_block(b"a|b\n\n|||\n", 1)
    assert block.valid.num_rows == 0 and block.valid.schema == VALID_SCHEMA
    assert block.rejects.column("reason").to_pylist() == ["field_count", "field_count"]


def test_line_numbers_follow_first_line_and_counts_add_up() -> None:
    lines = [GOOD.encode(), b"", line(dni="0"), line(fecha="2/30/2020"), b"  ", line(sujeto="")]
    block = parse_block(b"\n".join(lines) + b"\n", 5_000_001)
    assert block.lines == len(lines) == block.valid.num_rows + block.rejects.num_rows + block.blank_lines
    assert block.valid.column("line_number").to_pylist() == [5_000_001, 5_000_006]
    assert block.rejects.column("line_number").to_pylist() == [5_000_003, 5_000_004]
    assert block.rejects.column("reason").to_pylist() == ["dni", "fecha_ingreso"]


def test_raw_preview_keeps_256_characters_and_full_byte_length() -> None:
    raw = ("ñ" * 300).encode()
    result = check(raw)
    assert result == Reject("field_count", "ñ" * RAW_PREVIEW_CHARS, 600)


def test_parse_line_refuses_a_newline() -> None:
    with pytest.raises(ValueError, match="one line"):
        parse_line(b"a\nb")


# ---- helpers used by the chunk reader -------------------------------------------------------------


def test_make_reject_for_line_too_long() -> None:
    table = make_reject(42, "line_too_long", b"x\x00" * 200, 5_000_000)
    assert table.schema == REJECT_SCHEMA
    (row,) = table.to_pylist()
    assert row["line_number"] == 42 and row["reason"] == "line_too_long" and row["raw_length"] == 5_000_000
    assert row["raw_line"] == ("x\\x00" * 200)[:RAW_PREVIEW_CHARS]


def test_make_reject_refuses_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown reject reason"):
        make_reject(1, "nope", b"", 0)


@pytest.mark.parametrize("data,expected", [(b"", 0), (b"\n", 1), (b"a", 1), (b"a\nb", 2), (b"a\nb\n", 2)])
def test_count_lines(data: bytes, expected: int) -> None:
    assert count_lines(data) == expected == parse_block(data, 1).lines


def test_concatenated_blocks_equal_one_block() -> None:
    lines = [GOOD.encode(), b"bad", b"", line(pep="x")] * 3
    whole = parse_block(b"\n".join(lines) + b"\n", 1)
    first = parse_block(b"\n".join(lines[:5]) + b"\n", 1)
    second = parse_block(b"\n".join(lines[5:]) + b"\n", 6)
    assert pa.concat_tables([first.valid, second.valid]).equals(whole.valid)
    assert pa.concat_tables([first.rejects, second.rejects]).equals(whole.rejects)


def test_nombre_completo_counts_utf16_units_like_sql_server_nvarchar() -> None:
    # 49 emoji + ' ' + 'a' = 100 UTF-16 units (fits NVARCHAR(100)); 50 emoji = 102 units.
    assert isinstance(check(line(nombre="😀" * 49, apellido="a")), ValidRow)
    assert reason(line(nombre="😀" * 50, apellido="a")) == "nombre_completo_length"
    assert isinstance(check(line(nombre="é" * 97, apellido="ab")), ValidRow)  # BMP: one unit each
