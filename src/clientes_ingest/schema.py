"""The schema: SQLAlchemy Core tables (the single source of truth), the ``clientes_vigentes`` view and DDL.

The high-volume tables (``clientes``, ``ingest_rejects``) carry no foreign key on purpose: PostgreSQL
checks a foreign key with a trigger per row, which would dominate the bulk load; their key
``(job, line number)`` is the idempotency key. ``schema_ddl`` compiles it all for one dialect offline.
Requires: sqlalchemy only (no driver).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from clientes_ingest.dialects import dialect_for
from clientes_ingest.statuses import DONE, JobStatus

metadata = sa.MetaData()

# BIGINT identity everywhere except SQLite, whose auto-increment needs INTEGER PRIMARY KEY.
JobId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.func.current_timestamp()  # server defaults (created_at, FechaCreacion)


def utcnow() -> dt.datetime:
    """Naive UTC with microseconds: job and chunk timestamps (SQLite's CURRENT_TIMESTAMP has seconds only)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)

ingest_jobs = sa.Table(
    "ingest_jobs",
    metadata,
    sa.Column("id", JobId, primary_key=True, autoincrement=True),
    sa.Column("source_uri", sa.Unicode(1024), nullable=False),
    sa.Column("file_name", sa.Unicode(255), nullable=False),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    # The object version the job reads (S3 version id / ETag; local size-mtime): a resumed run reads it too.
    sa.Column("source_version_id", sa.Unicode(1024)),
    sa.Column("source_etag", sa.String(128)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("chunk_size", sa.BigInteger),
    sa.Column("chunk_count", sa.Integer),
    sa.Column("total_lines", sa.BigInteger),
    sa.Column("blank_lines", sa.BigInteger),
    sa.Column("rows_loaded", sa.BigInteger),
    sa.Column("rows_rejected", sa.BigInteger),
    sa.Column("peak_rss_bytes", sa.BigInteger),
    sa.Column("flow_run_id", sa.String(36)),
    # The process that holds a running job (lease.Owner): a rerun that finds it provably dead (same host,
    # pid gone or reused) takes the job over at once instead of waiting for the lease. Added to existing
    # databases by Database.ensure_schema (nullable columns).
    sa.Column("owner_host", sa.Unicode(255)),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("owner_started", sa.String(64)),  # the pid's start time (boot id + clock ticks): pid reuse
    sa.Column("owner_since", sa.DateTime),
    # Incremented by each run that takes the job over: the optimistic lock of a resume.
    sa.Column("runs", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=NOW),
    sa.Column("started_at", sa.DateTime),
    sa.Column("heartbeat_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("duration_s", sa.Float),
    sa.Column("error", sa.UnicodeText),
    # Retention (clientes_ingest.retention): purge began (the job can no longer be resumed), stored file
    # and rejects deleted, clientes rows deleted.
    sa.Column("purge_started_at", sa.DateTime),
    sa.Column("purged_at", sa.DateTime),
    sa.Column("rows_purged_at", sa.DateTime),
)
sa.Index("ix_ingest_jobs_sha256", ingest_jobs.c.sha256)

# One row per file content: the job that owns it. Its primary key is the database-side guard that
# lets only one of two concurrent runs of the same file register (and load) it.
ingest_file_claims = sa.Table(
    "ingest_file_claims",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("job_id", JobId, sa.ForeignKey("ingest_jobs.id"), nullable=False),
    sa.Column("claimed_at", sa.DateTime, nullable=False, server_default=NOW),
)

ingest_chunks = sa.Table(
    "ingest_chunks",
    metadata,
    sa.Column("job_id", JobId, sa.ForeignKey("ingest_jobs.id"), primary_key=True),
    sa.Column("chunk_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("start_offset", sa.BigInteger, nullable=False),
    sa.Column("end_offset", sa.BigInteger, nullable=False),
    sa.Column("first_line", sa.BigInteger, nullable=False),
    sa.Column("line_count", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text(f"'{JobStatus.PENDING.value}'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("rows_loaded", sa.BigInteger),
    sa.Column("rows_rejected", sa.BigInteger),
    sa.Column("blank_lines", sa.BigInteger),
    sa.Column("duration_s", sa.Float),
    sa.Column("peak_rss_bytes", sa.BigInteger),
    sa.Column("cpu_seconds", sa.Float),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("error", sa.UnicodeText),
)

clientes = sa.Table(
    "clientes",
    metadata,
    sa.Column("JobId", JobId, primary_key=True, autoincrement=False),
    sa.Column("LineNumber", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("NombreCompleto", sa.Unicode(100), nullable=False),
    sa.Column("DNI", sa.BigInteger, nullable=False),
    sa.Column("Estado", sa.String(10), nullable=False),
    sa.Column("FechaIngreso", sa.Date, nullable=False),
    sa.Column("EsPEP", sa.Boolean, nullable=False),
    sa.Column("EsSujetoObligado", sa.Boolean, nullable=True),
    sa.Column("FechaCreacion", sa.DateTime, nullable=False, server_default=NOW),
)

# The parser keeps a reject's first 256 characters; SQL Server counts NVARCHAR length in UTF-16
# code units, where a character outside the BMP (an emoji) takes two: hence twice the characters.
REJECT_RAW_CHARS = 256

ingest_rejects = sa.Table(
    "ingest_rejects",
    metadata,
    sa.Column("job_id", JobId, primary_key=True, autoincrement=False),
    sa.Column("line_number", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("chunk_no", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("raw_line", sa.Unicode(2 * REJECT_RAW_CHARS), nullable=False),
    sa.Column("raw_length", sa.BigInteger, nullable=False),
)

# Rejects per chunk and reason, counted exactly, and how many of them are stored in ingest_rejects
# (CLIENTES_MAX_STORED_REJECTS caps the stored rows per job). Written in the chunk's transaction.
ingest_reject_counts = sa.Table(
    "ingest_reject_counts",
    metadata,
    sa.Column("job_id", JobId, primary_key=True, autoincrement=False),
    sa.Column("chunk_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("reason", sa.String(32), primary_key=True),
    sa.Column("rejected", sa.BigInteger, nullable=False),
    sa.Column("stored", sa.BigInteger, nullable=False),
)

# Column order of the bulk loads; the parser's tables carry these fields (see rules.VALID_SCHEMA).
CLIENTES_COLUMNS = ("JobId", "LineNumber", "NombreCompleto", "DNI", "Estado", "FechaIngreso", "EsPEP",
                    "EsSujetoObligado")
VALID_FIELDS = ("line_number", "nombre_completo", "dni", "estado", "fecha_ingreso", "es_pep", "es_sujeto_obligado")
REJECT_COLUMNS = ("job_id", "line_number", "chunk_no", "reason", "raw_line", "raw_length")
REJECT_FIELDS = ("line_number", "reason", "raw_line", "raw_length")

# The current client base: the rows of the latest successfully completed job (docs/operations.md).
VIGENTES_VIEW = "clientes_vigentes"
_CREATE_VIEW = {"mssql": "CREATE OR ALTER VIEW", "postgresql": "CREATE OR REPLACE VIEW",
                "sqlite": "CREATE VIEW IF NOT EXISTS"}


def vigentes_select() -> sa.Select[Any]:
    """The rows of the completed job (with or without rejects) that finished last; ties go to the newer job."""
    j = ingest_jobs.c
    latest = (sa.select(j.id).where(j.status.in_(DONE)).order_by(j.finished_at.desc(), j.id.desc())
              .limit(1).scalar_subquery())
    return sa.select(*clientes.c).where(clientes.c.JobId == latest)


def view_ddl(dialect_name: str, create: str | None = None) -> str:
    """``CREATE ... VIEW clientes_vigentes AS SELECT ...`` for a dialect (idempotent form unless ``create``)."""
    dialect = dialect_for(dialect_name)
    query = vigentes_select().compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    select = "\n".join(line.rstrip() for line in str(query).splitlines())
    return f"{create or _CREATE_VIEW[dialect_name]} {VIGENTES_VIEW} AS\n{select}"


def current_snapshot(engine: Engine) -> dict[str, int | None]:
    """Which job ``clientes_vigentes`` shows and how many rows it has."""
    view = sa.table(VIGENTES_VIEW, sa.column("JobId"))
    with engine.connect() as conn:
        row = conn.execute(sa.select(sa.func.max(view.c.JobId), sa.func.count()).select_from(view)).one()
    return {"job_id": None if row[0] is None else int(row[0]), "rows": int(row[1])}


@sa.event.listens_for(metadata, "after_create")
def _create_view(_target: sa.MetaData, connection: Connection, **_kw: Any) -> None:
    """``create_all`` also creates the view when it is missing (another run may be creating it too)."""
    name = connection.dialect.name
    if VIGENTES_VIEW in sa.inspect(connection).get_view_names():
        return
    if name == "sqlite":
        connection.exec_driver_sql(view_ddl(name))
        return
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(view_ddl(name, create="CREATE VIEW"))
    except DBAPIError:
        if VIGENTES_VIEW not in sa.inspect(connection).get_view_names():
            raise


@sa.event.listens_for(metadata, "before_drop")
def _drop_view(_target: sa.MetaData, connection: Connection, **_kw: Any) -> None:
    connection.exec_driver_sql(f"DROP VIEW IF EXISTS {VIGENTES_VIEW}")


def schema_ddl(dialect_name: str) -> str:
    """The DDL of every table, index and view, compiled for ``mssql``, ``postgresql`` or ``sqlite``."""
    dialect = dialect_for(dialect_name)
    statements = []
    for table in metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";")
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";")
    view = view_ddl(dialect_name) + ";"
    # sqlcmd: a view must be the only statement of its batch.
    statements.append(f"GO\n{view}\nGO" if dialect_name == "mssql" else view)
    header = f"-- clientes-ingest schema for {dialect_name}, generated from clientes_ingest.db.metadata.\n"
    header += "-- Regenerate with: clientes-ingest schema --dialect " + dialect_name + "\n\n"
    return header + "\n\n".join(statements) + "\n"


def add_column_statement(dialect: sa.engine.Dialect, table: sa.Table, column: sa.Column[Any]) -> str:
    """``ALTER TABLE <table> ADD <column spec>`` in the dialect (valid T-SQL, PostgreSQL and SQLite)."""
    spec = str(CreateColumn(column).compile(dialect=dialect)).strip()
    return f"ALTER TABLE {dialect.identifier_preparer.quote(table.name)} ADD {spec}"


def add_missing_columns(engine: Engine) -> list[str]:
    """``ALTER TABLE ... ADD`` every nullable column of the metadata that a table lacks; returns them.

    A concurrent run may add the same column first: its error is ignored when the column is then there.
    """
    added = []
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"].lower() for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name.lower() in have:
                continue
            if not column.nullable or column.primary_key:
                raise RuntimeError(f"{table.name}.{column.name} is missing and NOT NULL: recreate the table")
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(add_column_statement(engine.dialect, table, column))
            except DBAPIError:
                names = {c["name"].lower() for c in sa.inspect(engine).get_columns(table.name)}
                if column.name.lower() not in names:
                    raise
            added.append(f"{table.name}.{column.name}")
    return added
