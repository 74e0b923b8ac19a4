"""Source templates of scheduled runs (``staging.resolve_source``): only the documented placeholders are
substituted, as plain text; every other brace (``str.format`` field syntax included) is a clear error."""

from __future__ import annotations

import datetime as dt

import pytest

from clientes_ingest.staging import TEMPLATE_FIELDS, SourceError, resolve_source

WHEN = dt.datetime(2025, 4, 7, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("template,expected", [
    ("s3://clientes-ingest/incoming/CLIENTES_IN_{MMYY}.dat", "s3://clientes-ingest/incoming/CLIENTES_IN_0425.dat"),
    ("/data/{YYYY}/{MM}/{DD}/CLIENTES_IN_{MMYY}.dat", "/data/2025/04/07/CLIENTES_IN_0425.dat"),
    ("x_{YY}{MM}_{YYYYMMDD}.dat", "x_2504_20250407.dat"),
    ("{MMYY}{MMYY}", "04250425"),
    ("CLIENTES_IN_0425.dat", "CLIENTES_IN_0425.dat"),
])
def test_documented_placeholders_are_filled(template: str, expected: str) -> None:
    assert resolve_source(template, WHEN) == expected
    assert resolve_source(template, WHEN.date()) == expected


@pytest.mark.parametrize("template", [
    "{MM.__class__.__mro__}",  # attribute lookups: str.format evaluated them
    "{MM.__class__.__init__.__globals__}",
    "{MM[0]}", "{MM!r}", "{MM:>40}", "{0}", "{}", "{mmyy}", "{ MMYY }", "{HOME}", "{MMYY}{DNI}",
])
def test_anything_but_a_documented_placeholder_is_an_error(template: str) -> None:
    with pytest.raises(SourceError) as error:
        resolve_source(f"s3://clientes-ingest/incoming/{template}.dat", WHEN)
    message = str(error.value)
    assert "unknown placeholder" in message
    assert all("{" + f + "}" in message for f in TEMPLATE_FIELDS)  # the fix: the names that work
    assert "class 'str'" not in message and "mappingproxy" not in message


@pytest.mark.parametrize("template", ["CLIENTES_IN_{MMYY.dat", "CLIENTES_IN_MMYY}.dat", "{{MMYY}}", "a{b{MMYY}",
                                      "{MMYY}}"])
def test_unmatched_braces_are_an_error(template: str) -> None:
    with pytest.raises(SourceError, match="unmatched brace"):
        resolve_source(template, WHEN)
