"""Hostile input through the real pipeline (the ``ingest-clientes`` flow under the Prefect test harness)
on SQLite and PostgreSQL: every case ends as the expected rows, rejects with the expected reasons and
blank lines, nothing crashes, and what was loaded before is untouched. The memory of a huge line is
bounded (it is never held whole).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa
from hostile_corpus import CASES, VALID, Case
from support.loading import load_file, rejects

from clientes_ingest import jobs, loader
from clientes_ingest.db import Database, clientes, ingest_rejects
from clientes_ingest.staging import stage_source
from clientes_ingest.storage import LocalStorage
from flows.ingest import ingest_clientes

COLUMNS = ("LineNumber", "NombreCompleto", "DNI", "Estado", "FechaIngreso", "EsPEP", "EsSujetoObligado")


def stored_rows(db: Database, job_id: int) -> dict[int, dict[str, object]]:
    query = sa.select(*(clientes.c[name] for name in COLUMNS)).where(clientes.c.JobId == job_id)
    with db.engine.connect() as conn:
        return {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(query)}


def stored_rejects(db: Database, job_id: int) -> dict[int, tuple[str, str, int]]:
    r = ingest_rejects.c
    with db.engine.connect() as conn:
        return {n: (reason, raw, length) for n, reason, raw, length in conn.execute(
            sa.select(r.line_number, r.reason, r.raw_line, r.raw_length).where(r.job_id == job_id))}


@pytest.fixture
def flow_env(prefect_harness: None, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("CLIENTES_DB_URL", db_url)
    monkeypatch.setenv("CLIENTES_STORAGE_ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("CLIENTES_BLOCK_SIZE", "64KiB")
    # These cases judge every line; several are mostly rejects on purpose (a few lines each), which the
    # reject guard would refuse as a whole (tests/integration/test_reject_guard.py): turn it off here.
    monkeypatch.setenv("CLIENTES_MAX_REJECT_RATIO", "1")
    return Database(db_url)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_ends_as_expected_rows_and_rejects(name: str, flow_env: Database, tmp_path: Path) -> None:
    case: Case = CASES[name]
    # Something loaded before (without Prefect, to keep this fast): a hostile file must leave it as it was.
    earlier = tmp_path / "CLIENTES_IN_0325.dat"
    earlier.write_text(VALID + "\n", encoding="utf-8")
    first = load_file(flow_env, earlier, tmp_path / "store")
    path = tmp_path / f"CLIENTES_IN_0425_{name}.dat"
    path.write_bytes(case.data)

    result = ingest_clientes(source=str(path))

    assert result.status == case.status
    assert (result.total_lines, result.blank_lines) == (case.total_lines, case.blank_lines)
    assert (result.rows_loaded, result.rows_rejected) == (len(case.rows), len(case.rejects))
    db = flow_env
    rows = stored_rows(db, result.job_id)
    assert sorted(rows) == sorted(case.rows)
    for number, expected in case.rows.items():
        assert {k: rows[number][k] for k in expected} == expected, number
    found = stored_rejects(db, result.job_id)
    assert {n: reason for n, (reason, _, _) in found.items()} == case.rejects
    for number, length in case.raw_lengths.items():
        assert found[number][2] == length
    for _, raw, _ in found.values():
        assert len(raw) <= 256 and "\x00" not in raw
    assert stored_rows(db, first.job_id)[1]["NombreCompleto"] == "María Gómez"
    assert len(stored_rows(db, first.job_id)) == 1


def test_sql_in_names_is_data(flow_env: Database, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    path.write_bytes(CASES["sql_injection_names"].data)
    ingest_clientes(source=str(path))
    tables = set(sa.inspect(flow_env.engine).get_table_names())
    assert {"clientes", "ingest_jobs", "ingest_chunks", "ingest_rejects", "ingest_file_claims"} <= tables
    with flow_env.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(clientes)).scalar_one() == 3


@pytest.mark.parametrize("name", ["one_10mb_line", "100k_pipes"])
def test_huge_lines_are_never_held_whole(name: str, sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    path.write_bytes(CASES[name].data)
    db = Database(sqlite_url)
    db.ensure_schema()
    storage = LocalStorage(tmp_path / "store")
    # Staging reads in fixed 8 MiB blocks by design; what must not grow with a line is the load.
    registration = jobs.register_job(db.engine, stage_source(str(path), storage, 1 << 20))
    tracemalloc.start()
    try:
        for chunk in registration.pending:
            loader.load_chunk(db, storage, registration.job_id, registration.uri, chunk, block_size=64 * 1024,
                              max_line_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r[1] for r in rejects(db, registration.job_id)] == [CASES[name].rejects[1]]
    # 64 KiB blocks and a 1 MiB line limit: the peak stays far below the 10 MB line (Python heap).
    assert peak < 3 * 1024 * 1024, f"peak {peak:,} bytes"
