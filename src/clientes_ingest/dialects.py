"""Dialect helpers: the dialects and bulk writers we support, engines tuned per dialect, URL redaction.

Dialects: SQL Server through pyodbc (``mssql+pyodbc``), PostgreSQL through psycopg 3, SQLite. The bulk
writers themselves live in ``clientes_ingest.writers`` (they need pyarrow; this module does not).
Requires: the driver of the URL's dialect when an engine connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

DIALECTS = ("mssql", "postgresql", "sqlite")

# The bulk writers of each dialect (built by ``clientes_ingest.writers.writer_for``); ``auto`` picks the
# first. docs/performance.md has the measurements behind each default.
WRITERS: dict[str, tuple[str, ...]] = {
    "postgresql": ("copy-binary", "copy-csv"),
    "sqlite": ("adbc", "executemany"),
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



def dialect_for(name: str) -> sa.engine.Dialect:
    """The SQLAlchemy dialect of ``mssql``, ``postgresql`` or ``sqlite``, to compile statements offline."""
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



def short_reason(exc: BaseException) -> str:
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


def is_connection_error(exc: DBAPIError) -> bool:
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
