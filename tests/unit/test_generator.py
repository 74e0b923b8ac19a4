"""The test-file generator: reproducibility, line format, corruption kinds and rates, size mode."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import pytest

import clientes_ingest.devtools.generator as generator
from clientes_ingest.devtools.generator import generate

TODAY = dt.date(2025, 4, 15)
NAME = r"[^|\n]+"
DNI_ESTADO = r"[1-9]\d{7}\|(Activo|Inactivo)"
DATE = r"(?P<m>[1-9]|1[0-2])/(?P<d>[1-9]|[12][0-9]|3[01])/(?P<y>\d{4})"
FLAGS = r"(true|false)\|(true|false)"
LOREM_NAME = r"[a-z]+(?: [a-z]+){49}"
VALID = re.compile(rf"{NAME}\|{NAME}\|{DNI_ESTADO}\|{DATE}\|{FLAGS}")
BAD_DATE = re.compile(rf"{NAME}\|{NAME}\|{DNI_ESTADO}\|(0000-00-00|99/99/9999|)\|{FLAGS}")
EMPTY_FLAGS = re.compile(rf"{NAME}\|{NAME}\|{DNI_ESTADO}\|{DATE}\|\|")
LOREM = re.compile(rf"{LOREM_NAME}\|{LOREM_NAME}\|{DNI_ESTADO}\|{DATE}\|{FLAGS}")


def classify(line: str) -> str:
    """Which kind a generated line is; fails the test on a line that is none of them."""
    if LOREM.fullmatch(line):
        return "lorem"
    if (m := VALID.fullmatch(line)) is not None:
        date = dt.date(int(m["y"]), int(m["m"]), int(m["d"]))  # raises on an impossible date
        assert TODAY - dt.timedelta(days=3653) <= date <= TODAY, line
        return "valid"
    if BAD_DATE.fullmatch(line):
        return "bad_date"
    if EMPTY_FLAGS.fullmatch(line):
        return "empty_flags"
    raise AssertionError(f"unexpected line {line!r}")


def read_lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a.dat", lines=3000, seed=7, today=TODAY)
    b = generate(tmp_path / "b.dat", lines=3000, seed=7, today=TODAY)
    c = generate(tmp_path / "c.dat", lines=3000, seed=8, today=TODAY)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()
    assert (a.lines, a.corrupt_lines, a.bytes) == (b.lines, b.corrupt_lines, b.bytes)


def test_line_count_format_and_stats(tmp_path: Path) -> None:
    stats = generate(tmp_path / "CLIENTES_IN_0425.dat", lines=20_000, seed=1, today=TODAY)
    lines = read_lines(stats.path)
    assert stats.lines == len(lines) == 20_000
    assert stats.bytes == stats.path.stat().st_size
    kinds = [classify(line) for line in lines]
    assert stats.corrupt_lines == sum(kind != "valid" for kind in kinds)
    assert not list(tmp_path.glob(".*.part")), "the temporary file must be gone"

    # Error rate 0.2 within 5 standard deviations of a binomial(20000, 0.2).
    n, p = len(lines), 0.2
    assert abs(stats.corrupt_lines - n * p) < 5 * math.sqrt(n * p * (1 - p))
    # The three kinds are chosen uniformly among corrupt lines.
    for kind in ("bad_date", "empty_flags", "lorem"):
        share = kinds.count(kind) / stats.corrupt_lines
        assert abs(share - 1 / 3) < 0.05, (kind, share)
    bad_dates = {line.split("|")[4] for line, kind in zip(lines, kinds, strict=True) if kind == "bad_date"}
    assert bad_dates == {"0000-00-00", "99/99/9999", ""}

    valid = [line for line, kind in zip(lines, kinds, strict=True) if kind == "valid"]
    assert any("'" in line for line in valid), "names with apostrophes"
    assert any(not line.isascii() for line in valid), "names with non-ASCII letters"
    assert {line.split("|")[3] for line in valid} == {"Activo", "Inactivo"}
    dnis = [int(line.split("|")[2]) for line in valid]
    assert 10_000_000 <= min(dnis) < 10_100_000 and 99_900_000 < max(dnis) <= 99_999_999
    # Dates spread over the whole window, not zero-padded.
    years = {int(line.split("|")[4].rsplit("/", 1)[1]) for line in valid}
    assert years == set(range(TODAY.year - 10, TODAY.year + 1))
    assert any(line.split("|")[4].startswith(("1/", "2/", "3/")) for line in valid)


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 500)])
def test_error_rate_extremes(tmp_path: Path, rate: float, expected: int) -> None:
    stats = generate(tmp_path / "x.dat", lines=500, error_rate=rate, seed=3, today=TODAY)
    kinds = [classify(line) for line in read_lines(stats.path)]
    assert stats.corrupt_lines == expected == sum(kind != "valid" for kind in kinds)


def test_size_mode_stops_at_first_line_reaching_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "BATCH_LINES", 100)  # so the size is reached several batches in
    seen: list[int] = []
    size = 50_000
    stats = generate(tmp_path / "s.dat", size=size, seed=5, today=TODAY, progress=seen.append)
    data = stats.path.read_bytes()
    assert stats.bytes == len(data) >= size
    last_line = data[:-1].rsplit(b"\n", 1)[1] + b"\n"
    assert len(data) - len(last_line) < size, "the file must stop at the first line that reaches size"
    lines = read_lines(stats.path)
    assert stats.lines == len(lines)
    assert stats.corrupt_lines == sum(classify(line) != "valid" for line in lines)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == stats.bytes


def test_empty_and_tiny_outputs(tmp_path: Path) -> None:
    empty = generate(tmp_path / "e.dat", lines=0, seed=1, today=TODAY)
    assert (empty.lines, empty.bytes, empty.path.read_bytes()) == (0, 0, b"")
    one = generate(tmp_path / "o.dat", size=1, seed=1, today=TODAY)
    assert one.lines == 1 and one.path.read_bytes().count(b"\n") == 1


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lines": 1, "size": 1}, {"lines": -1}, {"size": -1}, {"lines": 1, "error_rate": 1.5}],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "bad.dat", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "bad.dat").exists()


def test_date_pool_handles_leap_day() -> None:
    pool = generator.date_pool(dt.date(2024, 2, 29))
    assert pool[0] == "2/28/2014" and pool[-1] == "2/29/2024"
    assert len(pool) == (dt.date(2024, 2, 29) - dt.date(2014, 2, 28)).days + 1
