"""The ``clientes_vigentes`` view returns exactly the rows of the latest successfully completed job (on SQLite
and PostgreSQL; compiled for SQL Server), and the reject history of the trend reads the last completed jobs."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from clientes_ingest import quality
from clientes_ingest.db import Database, clientes, ingest_jobs, ingest_rejects, metadata, view_ddl

DAY = dt.datetime(2026, 5, 1, 7, 0)


def add_job(engine: Engine, status: str, finished_hours: float | None, rows: int, rejects: dict[str, int] | None = None
            ) -> int:
    """A job with ``rows`` client rows (DNI = job * 1000 + line) and rejects per reason."""
    finished = None if finished_hours is None else DAY + dt.timedelta(hours=finished_hours)
    rejects = rejects or {}
    with engine.begin() as conn:
        job_id = int(conn.execute(ingest_jobs.insert().values(
            source_uri="file:///x", file_name="CLIENTES_IN_0526.dat", status=status, finished_at=finished,
            total_lines=rows + sum(rejects.values()))).inserted_primary_key[0])
        if rows:
            conn.execute(clientes.insert(), [
                {"JobId": job_id, "LineNumber": n, "NombreCompleto": f"Cliente {n}", "DNI": job_id * 1000 + n,
                 "Estado": "Activo", "FechaIngreso": dt.date(2021, 1, 1), "EsPEP": False, "EsSujetoObligado": None}
                for n in range(1, rows + 1)])
        line = rows
        for reason, count in rejects.items():
            conn.execute(ingest_rejects.insert(), [
                {"job_id": job_id, "line_number": (line := line + 1), "chunk_no": 0, "reason": reason,
                 "raw_line": "x", "raw_length": 1} for _ in range(count)])
    return job_id


def vigentes(engine: Engine) -> set[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT "JobId", "LineNumber" FROM clientes_vigentes'))
        return {(r.JobId, r.LineNumber) for r in rows}


def test_the_view_is_the_latest_completed_job(db_url: str) -> None:
    db = Database(db_url)
    db.ensure_schema()
    db.ensure_schema()  # idempotent: the view exists, nothing fails
    engine = db.engine
    assert vigentes(engine) == set()
    add_job(engine, "completed", 0, 3)
    second = add_job(engine, "completed_with_rejects", 24, 4)
    add_job(engine, "failed", 30, 5)  # finished later, but failed
    add_job(engine, "rejected_file", 31, 2)  # the reject-ratio guard's status: not a snapshot
    add_job(engine, "running", None, 6)
    assert vigentes(engine) == {(second, n) for n in range(1, 5)}
    latest = add_job(engine, "completed", 48, 2)
    assert vigentes(engine) == {(latest, 1), (latest, 2)}
    # drop_all removes the view first (tables it depends on can then be dropped), create_all restores it
    metadata.drop_all(engine)
    metadata.create_all(engine)
    assert vigentes(engine) == set()


def test_the_view_compiles_for_sql_server() -> None:
    ddl = view_ddl("mssql")
    assert ddl.startswith("CREATE OR ALTER VIEW clientes_vigentes AS")
    assert "SELECT TOP 1 ingest_jobs.id" in ddl and "LIMIT" not in ddl
    assert "IN ('completed', 'completed_with_rejects')" in ddl


def test_reject_history_is_the_last_completed_jobs_before_this_one(db_url: str) -> None:
    db = Database(db_url)
    db.ensure_schema()
    engine = db.engine
    old = [add_job(engine, "completed_with_rejects", h, 10, {"dni": h + 1}) for h in range(9)]
    add_job(engine, "failed", 20, 10, {"dni": 50})
    current = add_job(engine, "completed_with_rejects", 30, 10, {"fecha_ingreso": 5})
    history = quality.reject_history(engine, current)
    assert [p.job_id for p in history] == old[::-1][:7]  # latest finished first, failed and current left out
    assert history[0] == quality.PastJob(old[-1], 19, {"dni": 9})
