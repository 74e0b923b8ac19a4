"""Database schema (SQLAlchemy Core, the single source of truth) and the ``Database`` handle.

Dialects: SQL Server through pyodbc (``mssql+pyodbc``), PostgreSQL through psycopg 3, SQLite. The
bulk writers of each dialect live in ``clientes_ingest.writers`` (they need pyarrow; this module does
not, so a process that only orchestrates stays small). The high-volume tables
(``clientes``, ``ingest_rejects``) carry no foreign key on purpose: PostgreSQL checks a foreign key
with a trigger per row, which would dominate the bulk load; their key ``(job, line number)`` is the
idempotency key. Requires: the driver of the URL's dialect.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

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
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
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

DIALECTS = ("mssql", "postgresql", "sqlite")

# The bulk writers of each dialect (built by ``clientes_ingest.writers.writer_for``); ``auto`` picks the
# first. docs/performance.md has the measurements behind each default.
WRITERS: dict[str, tuple[str, ...]] = {
    "postgresql": ("copy-binary", "copy-csv"),
    "sqlite": ("executemany", "adbc"),
    "mssql": ("fast-executemany", "executemany"),
}
WRITER_CHOICES = ("auto", "copy-binary", "copy-csv", "adbc", "executemany", "fast-executemany")


def resolve_writer(dialect: str, choice: str = "auto") -> str:
    """The bulk writer a dialect uses for a choice (``auto`` or one of ``WRITERS[dialect]``)."""
    names = WRITERS.get(dialect)
    if names is None:
        raise ValueError(f"no bulk writer for dialect {dialect!r}: use postgresql, mssql or sqlite")
    if choice == "auto":
        return names[0]
    if choice not in names:
        raise ValueError(f"writer {choice!r} does not work with {dialect}: choose auto or one of {', '.join(names)}")
    return choice


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it without the password."""


# The current client base: the rows of the latest successfully completed job (docs/operations.md).
VIGENTES_VIEW = "clientes_vigentes"
_CREATE_VIEW = {"mssql": "CREATE OR ALTER VIEW", "postgresql": "CREATE OR REPLACE VIEW",
                "sqlite": "CREATE VIEW IF NOT EXISTS"}


def vigentes_select() -> sa.Select[Any]:
    """The rows of the completed job (with or without rejects) that finished last; ties go to the newer job."""
    from clientes_ingest.jobs import DONE_STATUSES  # jobs imports this module

    j = ingest_jobs.c
    latest = (sa.select(j.id).where(j.status.in_(DONE_STATUSES)).order_by(j.finished_at.desc(), j.id.desc())
              .limit(1).scalar_subquery())
    return sa.select(*clientes.c).where(clientes.c.JobId == latest)


def view_ddl(dialect_name: str, create: str | None = None) -> str:
    """``CREATE ... VIEW clientes_vigentes AS SELECT ...`` for a dialect (idempotent form unless ``create``)."""
    dialect = _dialect(dialect_name)
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
    dialect = _dialect(dialect_name)
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


def _dialect(name: str) -> sa.engine.Dialect:
    if name not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r}: choose one of {', '.join(DIALECTS)}")
    module = {"mssql": "mssql.pyodbc", "postgresql": "postgresql.psycopg", "sqlite": "sqlite.pysqlite"}[name]
    dialect = sa.dialects.registry.load(module)()
    if name == "mssql":
        # Compile for SQL Server 2022 (what a connection would detect): DATE, NVARCHAR(max).
        dialect.server_version_info = (16, 0)
        dialect._setup_version_attributes()
    return dialect


def redact(url: str | URL) -> str:
    """A database URL safe to print: the password is replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


class Database:
    """A database handle that is cheap to pass to tasks: picklable, one engine per process, URL and driver.

    ``writer`` names the bulk writer of chunk loads (``auto`` or one of ``WRITERS[dialect]``, the setting
    ``CLIENTES_DB_WRITER``). ``adbc`` on SQLite also puts every statement of the process's engine on the
    ADBC SQLite driver (``clientes_ingest.sqlite_adbc``): two SQLite libraries in one process must not
    open the same file.
    """

    def __init__(self, url: SecretStr | str, writer: str = "auto") -> None:
        self._url = url if isinstance(url, SecretStr) else SecretStr(url)
        self._writer = writer
        if writer != "auto":
            resolve_writer(self.dialect, writer)  # a wrong choice fails here, not in the first chunk

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"_url": self._url, "_writer": self._writer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._url = state["_url"]
        self._writer = state.get("_writer", "auto")

    @property
    def writer(self) -> str:
        """The bulk writer chunk loads use (``auto`` resolved for this dialect)."""
        return resolve_writer(self.dialect, self._writer)

    @property
    def url(self) -> URL:
        return make_url(self._url.get_secret_value())

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def _engine_key(self) -> str:
        adbc = self.dialect == "sqlite" and self.writer == "adbc"
        return ("adbc:" if adbc else "") + self._url.get_secret_value()

    @property
    def engine(self) -> Engine:
        key = self._engine_key
        with _ENGINES_LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                engine = _ENGINES[key] = create_engine(self.url, adbc=key.startswith("adbc:"))
            return engine

    def describe_error(self, exc: BaseException) -> str:
        """One line naming the database and the cause, never the password."""
        reason = _short_reason(exc)
        password = self.url.password
        if password:
            reason = reason.replace(str(password), "***")
        return f"database {self.safe_url} unreachable ({reason})"

    def error_text(self, exc: BaseException) -> str:
        """A short error text for job and chunk records: the driver's message, no SQL, no password."""
        orig = getattr(exc, "orig", None)
        text = f"{type(orig or exc).__name__}: {' '.join(str(orig or exc).split())}"[:1000]
        password = self.url.password
        return text.replace(str(password), "***") if password else text

    def check(self) -> None:
        """Connect once; raise DatabaseUnavailable with a clear one-line message if that fails."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except (DBAPIError, SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(self.describe_error(exc)) from None

    def ensure_schema(self) -> None:
        """Create missing tables and the ``clientes_vigentes`` view, and add the nullable columns a database made
        by an older version lacks (idempotent; the only upgrade there is: new columns are always nullable)."""
        try:
            metadata.create_all(self.engine, checkfirst=True)
            add_missing_columns(self.engine)
        except DBAPIError as exc:
            if _is_connection_error(exc):
                raise DatabaseUnavailable(self.describe_error(exc)) from None
            raise


    def dispose(self) -> None:
        with _ENGINES_LOCK:
            engine = _ENGINES.pop(self._engine_key, None)
        if engine is not None:
            engine.dispose()


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


def _short_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    lowered = text.lower()
    for needle, short in (("connection refused", "connection refused"), ("timeout", "timed out"),
                          ("could not translate host", "unknown host"), ("name or service not known", "unknown host"),
                          ("does not exist", "does not exist"), ("unable to open database", "cannot open file"),
                          ("password authentication failed", "authentication failed"),
                          ("login failed", "authentication failed"), ("can't open lib", "ODBC driver not installed")):
        if needle in lowered:
            return f"{short}: {text[:300]}"
    return text[:300] or type(orig).__name__


def _is_connection_error(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, sa.exc.OperationalError)


def create_engine(url: URL, *, adbc: bool = False) -> Engine:
    """An engine tuned per dialect (SQLite: WAL + BEGIN IMMEDIATE; SQL Server: fast_executemany).

    ``adbc``: SQLite through the ADBC driver (``clientes_ingest.sqlite_adbc``, imports pyarrow)."""
    backend = url.get_backend_name()
    if backend == "sqlite" and adbc:
        from clientes_ingest.sqlite_adbc import create_adbc_engine

        return create_adbc_engine(url)
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 600, "check_same_thread": False})
        _sqlite_begin_immediate(engine)
        return engine
    if backend == "mssql":
        return sa.create_engine(url, fast_executemany=True, pool_pre_ping=True)
    return sa.create_engine(url, pool_pre_ping=True)


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory or ``file:`` URI database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _sqlite_begin_immediate(engine: Engine) -> None:
    # pysqlite's deferred BEGIN lets two chunk transactions both read, then deadlock on upgrading to a
    # write lock (SQLITE_BUSY without waiting). BEGIN IMMEDIATE takes the write lock up front, so
    # concurrent chunks queue on the busy timeout instead.
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
