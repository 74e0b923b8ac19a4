"""Reject reason codes and their precedence (``docs/reject-codes.md``). Pure data, no imports, so the
report and the API can name reasons without loading the parser (pyarrow, numpy).
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "encoding": "the line is not valid UTF-8 text, or holds a NUL byte (no target database stores NUL in text)",
    "field_count": "the line does not have exactly 7 fields separated by '|'",
    "empty_name": "nombre or apellido is empty after trimming whitespace",
    "nombre_completo_length": "nombre + ' ' + apellido is longer than 100 characters (one outside the BMP, "
                              "e.g. an emoji, counts 2: SQL Server's NVARCHAR(100) counts UTF-16 units)",
    "dni": "dni is not ASCII digits only, is 0, or does not fit a BIGINT",
    "estado": "estado is not exactly 'Activo' or 'Inactivo'",
    "fecha_ingreso": "fechaIngreso is not a real M/D/YYYY date with a year in 1900-2100",
    "es_pep": "esPep is not 'true' or 'false' (case-insensitive); it is required",
    "es_sujeto_obligado": "esSujetoObligado is not 'true', 'false' (case-insensitive) or empty",
    "line_too_long": "the line is longer than the configured maximum of bytes per line",
}
# Precedence of the field rules: a reject carries the first rule it breaks, in this order.
# line_too_long is decided by the chunk reader before a line ever reaches this module.
RULE_ORDER: tuple[str, ...] = (
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

__all__ = ["REASONS", "RULE_ORDER"]
