"""SQLite through the ADBC SQLite driver: a SQLAlchemy engine whose connections are ADBC's, so the
``adbc`` bulk writer can ingest Arrow tables inside the chunk's transaction.

ADBC's driver carries its own SQLite library. Two SQLite libraries in one process must not open the
same database file (closing a file in one drops the other's POSIX locks: sqlite.org/howtocorrupt.html
2.2.1), so a ``Database`` built with ``writer="adbc"`` runs EVERY statement of its process on this
engine, not only the bulk loads. Transactions are SQL (``BEGIN IMMEDIATE``/``COMMIT``/``ROLLBACK``) on an
autocommit ADBC connection, as the sqlite3 engine does (``dialects._sqlite_begin_immediate``).
Requires: adbc-driver-sqlite (and so pyarrow).
"""

from __future__ import annotations

import types
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite.base import SQLiteDialect, SQLiteExecutionContext
from sqlalchemy.engine import URL, Engine

_NAME = "sqlite.adbc_clientes"
BUSY_TIMEOUT_MS = 600_000  # as the sqlite3 engine's timeout=600: concurrent chunks queue, they do not fail


def _dbapi() -> types.ModuleType:
    """ADBC's DBAPI module with the two attributes SQLAlchemy's SQLite dialect reads from sqlite3's."""
    import adbc_driver_sqlite.dbapi as adbc

    module = types.ModuleType("clientes_ingest_adbc_sqlite")
    module.__dict__.update({k: v for k, v in vars(adbc).items() if not k.startswith("__")})
    module.__dict__.update(sqlite_version_info=(3, 45, 0), sqlite_version="3.45.0", paramstyle="qmark")
    return module


def _run(dbapi_connection: Any, sql: str) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _scalar(dbapi_connection: Any, sql: str) -> int:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


class _Context(SQLiteExecutionContext):
    """ADBC's cursors report neither the row count of an UPDATE/DELETE nor the last row id: SQLite's own
    ``changes()`` and ``last_insert_rowid()`` on the same connection give both (callers rely on them:
    a chunk attempt counts only when its UPDATE matched; a job's id comes from its INSERT)."""

    def post_exec(self) -> None:
        if (self.isupdate or self.isdelete) and not self.executemany:
            self._rowcount = _scalar(self._dbapi_connection, "SELECT changes()")

    def get_lastrowid(self) -> int:
        return _scalar(self._dbapi_connection, "SELECT last_insert_rowid()")


# ADBC's SQLite driver types each result column from its first batch of rows and fails on a later value of
# another type (a column NULL for the first 1,024 rows, text after). One batch per result avoids that; the
# price is that a result is materialised at once (the project's big reads are paged).
_ONE_BATCH = {"adbc.sqlite.query.batch_rows": str(2**30)}


def _one_batch(cursor: Any) -> None:
    cursor.adbc_statement.set_options(**_ONE_BATCH)


class ADBCSQLiteDialect(SQLiteDialect):
    """SQLAlchemy's SQLite dialect over ADBC connections (autocommit; transactions as SQL)."""

    driver = "adbc"
    supports_statement_cache = True
    execution_ctx_cls = _Context

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        version = connection.exec_driver_sql("SELECT sqlite_version()").scalar_one()
        return tuple(int(part) for part in str(version).split("."))

    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        _one_batch(cursor)
        cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        _one_batch(cursor)
        cursor.execute(statement)

    @classmethod
    def import_dbapi(cls) -> types.ModuleType:
        return _dbapi()

    def do_begin(self, dbapi_connection: Any) -> None:
        _run(dbapi_connection, "BEGIN IMMEDIATE")

    def do_commit(self, dbapi_connection: Any) -> None:
        _run(dbapi_connection, "COMMIT")

    def do_rollback(self, dbapi_connection: Any) -> None:
        try:
            _run(dbapi_connection, "ROLLBACK")
        except self.loaded_dbapi.OperationalError as exc:  # the pool resets connections that never began
            if "no transaction is active" not in str(exc):
                raise


def create_adbc_engine(url: URL) -> Engine:
    """An engine on the ADBC SQLite driver for a file URL (WAL, synchronous=NORMAL, 600 s busy timeout)."""
    import adbc_driver_sqlite.dbapi as adbc

    from clientes_ingest.db import sqlite_file

    path = sqlite_file(url)
    if path is None:
        raise ValueError("the adbc writer needs a SQLite file (sqlite:///path.db), not an in-memory database")
    path.parent.mkdir(parents=True, exist_ok=True)

    def connect() -> Any:
        connection = adbc.connect(str(path), autocommit=True)
        # The busy timeout first: switching to WAL needs the file's lock, which another process may hold.
        for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=NORMAL"):
            _run(connection, f"PRAGMA {pragma}")
        return connection

    sa.dialects.registry.register(_NAME, __name__, "ADBCSQLiteDialect")
    return sa.create_engine("sqlite+adbc_clientes://", creator=connect)
