"""Helpers shared by the integration tests: stage + register + load without Prefect, read tables back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clientes_ingest import jobs, loader, staging
from clientes_ingest.db import Database, clientes, ingest_jobs, ingest_rejects, utcnow
from clientes_ingest.guard import RejectPolicy
from clientes_ingest.storage import LocalStorage, Storage


def stage(path: Path, storage: Storage, chunk_size: int) -> jobs.StagedFile:
    return staging.stage_source(str(path), storage, chunk_size)


def load_file(
    db: Database, path: Path, storage_root: Path, *, chunk_size: int = 1 << 20, block_size: int = 1 << 16,
    max_line_bytes: int = 1 << 20, force: bool = False, policy: RejectPolicy | None = None,
    storage: Storage | None = None,
) -> jobs.Registration:
    """The flow's steps, called directly: stage, register, load every pending chunk, finalize.

    The file is stored in ``storage`` when given (e.g. S3), else in local storage at ``storage_root``."""
    db.ensure_schema()
    storage = storage if storage is not None else LocalStorage(storage_root)
    staged = stage(path, storage, chunk_size)
    registration = jobs.register_job(db.engine, staged, force=force)
    for chunk in registration.pending:
        loader.load_chunk(db, storage, registration.job_id, registration.uri, chunk, block_size=block_size,
                          max_line_bytes=max_line_bytes, policy=policy)
    jobs.finalize_job(db.engine, registration.job_id, policy)
    return registration


def partly_loaded(
    db: Database, source: str | Path, storage: Storage, *, chunk_size: int, loaded: int, block_size: int = 1 << 16,
    heartbeat_age: dt.timedelta | None = None,
) -> jobs.Registration:
    """What a run that died after committing its first ``loaded`` chunks leaves: a ``running`` job whose
    other chunks are still to load; its heartbeat set ``heartbeat_age`` in the past when given."""
    registration = jobs.register_job(db.engine, staging.stage_source(str(source), storage, chunk_size))
    for chunk in registration.pending[:loaded]:
        loader.load_chunk(db, storage, registration.job_id, registration.uri, chunk, block_size=block_size,
                          max_line_bytes=1 << 20)
    if heartbeat_age is not None:
        with db.engine.begin() as conn:
            conn.execute(ingest_jobs.update().where(ingest_jobs.c.id == registration.job_id)
                         .values(heartbeat_at=utcnow() - heartbeat_age))
    return registration


def rows(db: Database, job_id: int | None = None) -> list[tuple[Any, ...]]:
    """Loaded rows as comparable tuples (line number first), optionally for one job."""
    c = clientes.c
    query = sa.select(c.LineNumber, c.NombreCompleto, c.DNI, c.Estado, c.FechaIngreso, c.EsPEP, c.EsSujetoObligado)
    if job_id is not None:
        query = query.where(c.JobId == job_id)
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query.order_by(c.JobId, c.LineNumber))]


def rejects(db: Database, job_id: int | None = None) -> list[tuple[Any, ...]]:
    r = ingest_rejects.c
    query = sa.select(r.line_number, r.reason, r.raw_line, r.raw_length)
    if job_id is not None:
        query = query.where(r.job_id == job_id)
    with db.engine.connect() as conn:
        return [tuple(x) for x in conn.execute(query.order_by(r.job_id, r.line_number))]


def count(db: Database, table: sa.Table) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
