"""The ``Database`` handle: URL, engine per process, connection check, schema creation, error texts.

The tables live in ``clientes_ingest.schema`` and the dialect helpers in ``clientes_ingest.dialects``;
both are re-exported here because most callers import them from this module. This module does not
import pyarrow, so a process that only orchestrates stays small. Requires: the driver of the URL's dialect.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from clientes_ingest.dialects import (
    DIALECTS,
    WRITER_CHOICES,
    WRITERS,
    create_engine,
    is_connection_error,
    redact,
    resolve_writer,
    short_reason,
    sqlite_file,
)
from clientes_ingest.schema import (
    CLIENTES_COLUMNS,
    REJECT_COLUMNS,
    REJECT_FIELDS,
    REJECT_RAW_CHARS,
    VALID_FIELDS,
    VIGENTES_VIEW,
    add_column_statement,
    add_missing_columns,
    clientes,
    current_snapshot,
    ingest_chunks,
    ingest_file_claims,
    ingest_jobs,
    ingest_reject_counts,
    ingest_rejects,
    metadata,
    schema_ddl,
    utcnow,
    view_ddl,
    vigentes_select,
)

__all__ = [
    "CLIENTES_COLUMNS", "DIALECTS", "REJECT_COLUMNS", "REJECT_FIELDS", "REJECT_RAW_CHARS", "VALID_FIELDS",
    "VIGENTES_VIEW", "WRITERS", "WRITER_CHOICES", "Database", "DatabaseUnavailable", "add_column_statement",
    "add_missing_columns", "clientes", "create_engine", "current_snapshot", "ingest_chunks", "ingest_file_claims",
    "ingest_jobs", "ingest_reject_counts", "ingest_rejects", "metadata", "redact", "resolve_writer", "schema_ddl",
    "sqlite_file", "utcnow", "view_ddl", "vigentes_select",
]


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it without the password."""


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
        """The bulk writer chunk loads use (``auto`` resolved for this dialect; on an in-memory SQLite,
        which the ADBC driver cannot open, ``auto`` is ``executemany``)."""
        if self._writer == "auto" and self.dialect == "sqlite" and sqlite_file(self.url) is None:
            return "executemany"
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
        reason = short_reason(exc)
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
            if is_connection_error(exc):
                raise DatabaseUnavailable(self.describe_error(exc)) from None
            raise


    def dispose(self) -> None:
        with _ENGINES_LOCK:
            engine = _ENGINES.pop(self._engine_key, None)
        if engine is not None:
            engine.dispose()
