"""A corpus of hostile CLIENTES files, each built in memory with its expected outcome: which lines load
as rows (and, where it matters, with what values), which are rejected and why, how many are blank.

The cases are generators, not files in the repository: a 10 MB line and invalid bytes do not belong in
git, and a reader sees the hostile part of each case right here.
"""

from __future__ import annotations

import codecs
import datetime as dt
from dataclasses import dataclass, field

VALID = "María|Gómez|45678901|Activo|11/13/2021|true|false"


def line(nombre: str = "Ana", apellido: str = "Pérez", dni: str = "12345678", estado: str = "Activo",
         fecha: str = "1/2/2020", pep: str = "true", sujeto: str = "") -> str:
    return "|".join((nombre, apellido, dni, estado, fecha, pep, sujeto))


@dataclass(frozen=True)
class Case:
    """A hostile file and what loading it must give."""

    name: str
    data: bytes
    total_lines: int
    blank_lines: int = 0
    rows: dict[int, dict[str, object]] = field(default_factory=dict)  # line -> expected column values
    rejects: dict[int, str] = field(default_factory=dict)  # line -> reason code
    raw_lengths: dict[int, int] = field(default_factory=dict)  # line -> expected raw_length of its reject

    @property
    def status(self) -> str:
        return "completed_with_rejects" if self.rejects else "completed"


EMOJI_NAME = "👩‍💻"  # woman technologist: three code points joined by ZWJ
COMBINING = "Jose\u0301"  # "José" written with a combining acute accent (not normalised)
INJECTION = "Robert'); DROP TABLE clientes;--"


def cases() -> list[Case]:
    return [
        Case("empty_file", b"", total_lines=0),
        Case("only_newlines", b"\n" * 5, total_lines=5, blank_lines=5),
        Case("only_a_bom", codecs.BOM_UTF8, total_lines=1, blank_lines=1),
        Case("no_trailing_newline", f"{VALID}\n{line()}".encode(), total_lines=2,
             rows={1: {"NombreCompleto": "María Gómez"}, 2: {"NombreCompleto": "Ana Pérez"}}),
        Case("crlf", f"{VALID}\r\n{line(sujeto='TRUE')}\r\nnot|enough\r\n\r\n".encode(), total_lines=4,
             blank_lines=1, rows={1: {"EsSujetoObligado": False}, 2: {"EsSujetoObligado": True}},
             rejects={3: "field_count"}, raw_lengths={3: 10}),
        Case("bom", codecs.BOM_UTF8 + f"{VALID}\n\ufeff{line()}\n".encode(), total_lines=2,
             rows={1: {"NombreCompleto": "María Gómez"}, 2: {"NombreCompleto": "\ufeffAna Pérez"}}),
        Case("invalid_utf8", b"Mar\xeda|G\xf3mez|45678901|Activo|11/13/2021|true|false\n\xff\xfe\n"
             + VALID.encode() + b"\n", total_lines=3, rows={3: {}}, rejects={1: "encoding", 2: "encoding"},
             raw_lengths={1: 49, 2: 2}),
        Case("nul_bytes", b"Ana\x00|P\xc3\xa9rez|12345678|Activo|1/2/2020|true|\n\x00\x00\x00\n"
             + VALID.encode() + b"\n", total_lines=3, rows={3: {}}, rejects={1: "encoding", 2: "encoding"}),
        Case("one_10mb_line", b"x" * 10_000_000 + b"\n" + VALID.encode() + b"\n", total_lines=2, rows={2: {}},
             rejects={1: "line_too_long"}, raw_lengths={1: 10_000_000}),
        Case("100k_pipes", b"|" * 100_000 + b"\n" + VALID.encode(), total_lines=2, rows={2: {}},
             rejects={1: "field_count"}, raw_lengths={1: 100_000}),
        Case("sql_injection_names",
             "\n".join([line(nombre=INJECTION, apellido="Tables"),
                        line(nombre="x'; DELETE FROM ingest_jobs; --", apellido='"quoted"'),
                        line(nombre="a,b", apellido="c\\N"),  # CSV separator and COPY's NULL marker
                        line(nombre="1); DROP TABLE clientes", apellido="x", dni="1; DROP TABLE clientes")]
                       ).encode(),
             total_lines=4,
             rows={1: {"NombreCompleto": f"{INJECTION} Tables"},
                   2: {"NombreCompleto": "x'; DELETE FROM ingest_jobs; -- \"quoted\""},
                   3: {"NombreCompleto": "a,b c\\N"}},
             rejects={4: "dni"}),
        Case("unicode_names",
             "\n".join([line(nombre=COMBINING, apellido="Ñúñez"),
                        line(nombre=EMOJI_NAME, apellido="🚀🇦🇷"),
                        line(nombre="محمد", apellido="עברית"),
                        # Emoji are outside the BMP: two UTF-16 units each, as SQL Server's NVARCHAR counts.
                        line(nombre="😀" * 49, apellido="a"),  # exactly 100 units
                        line(nombre="😀" * 50, apellido="a"),  # 102 units (51 characters)
                        line(nombre="\u00a0", apellido="NBSP is data, not whitespace")]).encode() + b"\n",
             total_lines=6,
             rows={1: {"NombreCompleto": f"{COMBINING} Ñúñez"}, 2: {"NombreCompleto": f"{EMOJI_NAME} 🚀🇦🇷"},
                   3: {"NombreCompleto": "محمد עברית"}, 4: {"NombreCompleto": "😀" * 49 + " a"},
                   6: {"NombreCompleto": "\u00a0 NBSP is data, not whitespace"}},
             rejects={5: "nombre_completo_length"}),
        Case("dni_limits",
             "\n".join([line(dni="9223372036854775807"), line(dni="9223372036854775808"),
                        line(dni="99999999999999999999999999999999"), line(dni="0000000000000000000000042"),
                        line(dni="0"), line(dni="-1"), line(dni="１２３")]).encode() + b"\n",
             total_lines=7,
             rows={1: {"DNI": 9223372036854775807}, 4: {"DNI": 42}},
             rejects={2: "dni", 3: "dni", 5: "dni", 6: "dni", 7: "dni"}),
        Case("dates",
             "\n".join([line(fecha="2/29/2023"), line(fecha="12/31/1899"), line(fecha="2/29/2024"),
                        line(fecha="1/1/1900"), line(fecha="12/31/2100"), line(fecha="1/1/2101"),
                        line(fecha="13/1/2020"), line(fecha="2020-01-01"), line(fecha="02/03/2021")]).encode()
             + b"\n",
             total_lines=9,
             rows={3: {"FechaIngreso": dt.date(2024, 2, 29)}, 4: {"FechaIngreso": dt.date(1900, 1, 1)},
                   5: {"FechaIngreso": dt.date(2100, 12, 31)}, 9: {"FechaIngreso": dt.date(2021, 2, 3)}},
             rejects={1: "fecha_ingreso", 2: "fecha_ingreso", 6: "fecha_ingreso", 7: "fecha_ingreso",
                      8: "fecha_ingreso"}),
    ]


CASES = {case.name: case for case in cases()}
