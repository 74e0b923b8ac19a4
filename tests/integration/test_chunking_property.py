"""Property: however a file is cut into chunks and blocks, the loaded rows and rejects are those of a
single-chunk run, and loaded + rejected + blank = lines in the file."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.loading import load_file, rejects, rows

from clientes_ingest import job_queries
from clientes_ingest.db import Database
from clientes_ingest.guard import RejectPolicy

VALID = st.builds(
    lambda n, a, dni, e, m, d, y, p, s: f"{n}|{a}|{dni}|{e}|{m}/{d}/{y}|{p}|{s}",
    st.sampled_from(["María", "Juan", "O'Kon", "Zoë"]), st.sampled_from(["Gómez", "D'Amore", "Li"]),
    st.integers(1, 99_999_999), st.sampled_from(["Activo", "Inactivo"]), st.integers(1, 12), st.integers(1, 31),
    st.integers(1990, 2030), st.sampled_from(["true", "false", "TRUE"]), st.sampled_from(["true", "false", ""]),
)
CORRUPT = st.sampled_from([
    "", "   ", "a|b", "a|b|1|Activo|0000-00-00|true|false", "a|b|1|Activo|99/99/9999|true|false",
    "a|b|1|Activo||true|false", "a|b|1|Activo|1/1/2020||", " ".join(["lorem"] * 50) + "|x|1|Activo|1/1/2020|true|",
    "a|b|-1|Activo|1/1/2020|true|false", "a|b|1|activo|1/1/2020|true|false", "x" * 120,
])
LINE = st.one_of(VALID, CORRUPT).map(lambda s: s.encode())
ENDINGS = st.sampled_from([b"\n", b"\r\n"])

counter = itertools.count()
# Chunking alone is under test: the reject-ratio guard is off so that mostly-corrupt draws load too
# (the guard has its own tests in test_reject_guard.py).
NO_GUARD = RejectPolicy(max_ratio=1.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.tuples(LINE, ENDINGS), min_size=0, max_size=60),
    trailing_newline=st.booleans(),
    chunk_size=st.integers(1, 600),
    block_size=st.integers(1, 400),
    max_line_bytes=st.sampled_from([100, 1 << 20]),
)
def test_any_chunking_gives_the_single_chunk_result(
    tmp_path: Path, lines: list[tuple[bytes, bytes]], trailing_newline: bool, chunk_size: int, block_size: int,
    max_line_bytes: int,
) -> None:
    data = b"".join(line + ending for line, ending in lines)
    if lines and not trailing_newline:
        data = data[: -len(lines[-1][1])]
    case = tmp_path / f"case{next(counter)}"
    case.mkdir()
    path = case / "CLIENTES_IN_0425.dat"
    path.write_bytes(data)
    db = Database(f"sqlite:///{case / 'clientes.db'}")
    single = load_file(db, path, case / "store", chunk_size=1 << 30, block_size=1 << 20, max_line_bytes=max_line_bytes,
                       policy=NO_GUARD)
    chunked = load_file(db, path, case / "store", chunk_size=chunk_size, block_size=block_size,
                        max_line_bytes=max_line_bytes, force=True, policy=NO_GUARD)
    assert rows(db, chunked.job_id) == rows(db, single.job_id)
    assert rejects(db, chunked.job_id) == rejects(db, single.job_id)
    summary = job_queries.get_job(db.engine, chunked.job_id)
    expected_lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert summary.rows_loaded + summary.rows_rejected + summary.blank_lines == summary.total_lines == expected_lines
    db.dispose()
