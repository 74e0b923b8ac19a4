"""Every bulk writer against its real database (PostgreSQL binary and CSV COPY, SQLite executemany and
ADBC ingest): values of every type round-trip, a failed COPY/ingest rolls the whole chunk back, and the
retry loads it exactly once. SQL Server's writers are checked in test_schema_and_dialects (no server here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from support.loading import rejects, rows, stage

from clientes_ingest import jobs, loader, writers
from clientes_ingest.db import Database, clientes, ingest_chunks, ingest_rejects, resolve_writer
from clientes_ingest.rules import REJECT_SCHEMA, VALID_SCHEMA
from clientes_ingest.storage import LocalStorage

WRITERS = [("postgresql", "copy-binary"), ("postgresql", "copy-csv"), ("sqlite", "executemany"), ("sqlite", "adbc")]


@pytest.fixture(params=WRITERS, ids=[f"{d}-{w}" for d, w in WRITERS])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A fresh database of the dialect, its handle built with the writer under test."""
    dialect, writer = request.param
    url = request.getfixturevalue("pg_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'c.db'}"
    database = Database(url, writer=writer)
    database.ensure_schema()
    assert database.writer == writer
    return database


NAME_100 = "Ñ" + "😀" * 49 + "x" * 50  # 100 characters, 49 of them outside the BMP
VALID = pa.table({
    "line_number": [1, 2, 3, 9_223_372_036_854_775_807],
    "nombre_completo": [NAME_100, 'Ana "La Jefa" Pérez, Jr', "Zoë\\ 𝄞\ttab", "a b"],
    "dni": [0, 1, 9_223_372_036_854_775_807, 45_678_901],
    "estado": ["Activo", "Inactivo", "Activo", "Inactivo"],
    "fecha_ingreso": [dt.date(1900, 1, 1), dt.date(2100, 12, 31), dt.date(2024, 2, 29), dt.date(1999, 12, 31)],
    "es_pep": [True, False, True, False],
    "es_sujeto_obligado": [None, True, False, None],
}, schema=VALID_SCHEMA)
REJECTS = pa.table({
    "line_number": [5, 6, 7],
    "reason": ["fecha_ingreso", "field_count", "line_too_long"],
    "raw_line": ["a|b|1|Activo|0000-00-00|true|", "𝄞😀|\"q\",\\,\r", ""],
    "raw_length": [30, 14, 2_000_000],
}, schema=REJECT_SCHEMA)


def test_every_type_round_trips(db: Database) -> None:
    writer = writers.writer_for(db.dialect, db.writer)
    with db.engine.begin() as conn:
        assert writer.write_rows(conn, 7, VALID) == 4
        assert writer.write_rejects(conn, 7, 3, REJECTS) == 3
        assert writer.write_rows(conn, 7, VALID.slice(0, 0)) == 0  # an empty block writes nothing
    assert rows(db) == [tuple(r.values()) for r in VALID.to_pylist()]
    assert rejects(db) == [tuple(r.values()) for r in REJECTS.to_pylist()]
    with db.engine.connect() as conn:
        keys = conn.execute(sa.select(ingest_rejects.c.job_id, ingest_rejects.c.chunk_no).distinct()).all()
        created = conn.execute(sa.select(sa.func.count()).where(clientes.c.JobId == 7,
                                                                clientes.c.FechaCreacion.is_not(None))).scalar()
    assert keys == [(7, 3)] and created == 4


LINES = [
    "María|Gómez|45678901|Activo|11/13/2021|true|false",
    "Zoë 😀|Ñandú|2|Inactivo|12/31/2100|false|",
    "Ana|Pérez|12345678|Activo|2/30/2020|true|true",  # fecha_ingreso reject
    "Bo|Li|3|Activo|1/1/1900|true|TRUE",
    "x|y|z",  # field_count reject
    "Luis|Núñez|87654321|Activo|1/2/2019|false|false",
]


def _chunk_status(db: Database, job_id: int) -> list[tuple[str, int]]:
    with db.engine.connect() as conn:
        query = sa.select(ingest_chunks.c.status, ingest_chunks.c.attempts).where(ingest_chunks.c.job_id == job_id)
        return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def test_a_failed_bulk_write_rolls_back_the_chunk_and_the_retry_loads_it_once(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "CLIENTES_IN_0101.dat"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    storage = LocalStorage(tmp_path / "store")
    registration = jobs.register_job(db.engine, stage(path, storage, 1 << 20))
    (chunk,) = registration.pending
    job = registration.job_id
    # Another transaction already holds line 5's reject key: the rejects' COPY/ingest of this chunk fails
    # AFTER its rows were written, so only a rollback of the whole chunk leaves the rows out.
    planted = {"job_id": job, "line_number": 5, "chunk_no": 99, "reason": "planted", "raw_line": "", "raw_length": 0}
    with db.engine.begin() as conn:
        conn.execute(ingest_rejects.insert().values(**planted))

    def load() -> loader.ChunkResult:
        return loader.load_chunk(db, storage, job, registration.uri, chunk, block_size=1 << 16,
                                 max_line_bytes=1 << 20)

    with pytest.raises(Exception, match="(?i)unique|duplicate|constraint"):
        load()
    assert rows(db) == []
    assert rejects(db) == [(5, "planted", "", 0)]
    assert _chunk_status(db, job) == [("failed", 1)]

    with db.engine.begin() as conn:
        conn.execute(ingest_rejects.delete().where(ingest_rejects.c.reason == "planted"))
    first, again = load(), load()
    assert (first.skipped, first.rows_loaded, first.rows_rejected) == (False, 4, 2)
    assert again.skipped and (again.rows_loaded, again.rows_rejected) == (4, 2)
    assert [r[0] for r in rows(db)] == [1, 2, 4, 6]
    assert rows(db)[1] == (2, "Zoë 😀 Ñandú", 2, "Inactivo", dt.date(2100, 12, 31), False, None)
    assert [(n, reason) for n, reason, _, _ in rejects(db)] == [(3, "fecha_ingreso"), (5, "field_count")]
    assert _chunk_status(db, job) == [("done", 2)]  # the skipped third call counts no attempt


def test_writer_choice_is_checked_against_the_dialect() -> None:
    assert resolve_writer("postgresql") == "copy-binary"
    assert resolve_writer("sqlite") == "adbc"
    assert resolve_writer("mssql") == "fast-executemany"
    with pytest.raises(ValueError, match="'adbc' does not work with postgresql: choose auto or one of copy-binary"):
        Database("postgresql+psycopg://u@h/d", writer="adbc")
    with pytest.raises(ValueError, match="does not work with mssql"):
        writers.writer_for("mssql", "copy-csv")
    assert isinstance(writers.writer_for("postgresql", "copy-csv"), writers.PostgresCopyWriter)
    assert isinstance(writers.writer_for("postgresql"), writers.PostgresBinaryCopyWriter)
    plain = writers.writer_for("mssql", "executemany")
    assert isinstance(plain, writers.ExecutemanyWriter) and not plain.fast_executemany


def test_the_writer_survives_pickling_to_a_chunk_worker(tmp_path: Path) -> None:
    import pickle

    db = pickle.loads(pickle.dumps(Database(f"sqlite:///{tmp_path / 'c.db'}", writer="adbc")))  # noqa: S301
    assert db.writer == "adbc" and db.engine.dialect.driver == "adbc"
    db.dispose()


def test_adbc_refuses_an_in_memory_sqlite() -> None:
    with pytest.raises(ValueError, match="needs a SQLite file"):
        _ = Database("sqlite://", writer="adbc").engine


def test_the_setting_reaches_the_database_the_run_loads_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from clientes_ingest import tasks
    from clientes_ingest.settings import load_settings

    monkeypatch.setenv("CLIENTES_DB_WRITER", "adbc")
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'c.db'}", storage_root=tmp_path / "store")
    database, _ = tasks.load_resources.fn(settings, str(tmp_path / "CLIENTES_IN_0101.dat"))
    assert database.writer == "adbc" and database.engine.dialect.driver == "adbc"
    database.dispose()
    monkeypatch.setenv("CLIENTES_DB_WRITER", "copy-binary")
    with pytest.raises(ValueError, match="'copy-binary' does not work with sqlite"):
        tasks.load_resources.fn(load_settings(db_url="sqlite:///x.db"), "x")
    monkeypatch.setenv("CLIENTES_DB_WRITER", "bulk")
    with pytest.raises(ValueError, match="db_writer"):
        load_settings()


def test_the_adbc_engine_reads_a_column_that_is_null_for_many_rows_then_text(tmp_path: Path) -> None:
    from clientes_ingest.db import ingest_jobs

    db = Database(f"sqlite:///{tmp_path / 'c.db'}", writer="adbc")
    db.ensure_schema()
    with db.engine.begin() as conn:
        conn.execute(ingest_jobs.insert(), [{"source_uri": "x", "file_name": "x", "status": "s"}] * 3000)
        conn.execute(ingest_jobs.insert().values(source_uri="x", file_name="x", status="s", error="boom",
                                                 duration_s=1.5))
    with db.engine.connect() as conn:
        read = conn.execute(sa.select(ingest_jobs.c.error, ingest_jobs.c.duration_s).order_by(ingest_jobs.c.id)).all()
    assert len(read) == 3001 and read[-1] == ("boom", 1.5) and read[0] == (None, None)
    db.dispose()


def test_auto_on_an_in_memory_sqlite_uses_executemany_and_works() -> None:
    # ADBC needs a file; an in-memory database (tests, quick checks) keeps working with sqlite3.
    db = Database("sqlite://")
    assert db.writer == "executemany"
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert Database("sqlite:///clientes.db").writer == "adbc"
    db.dispose()
