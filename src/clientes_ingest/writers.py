"""Bulk writers per dialect: append a block's parsed rows and rejects inside the caller's transaction.

Chosen by name (``db.WRITERS``, setting ``CLIENTES_DB_WRITER``; ``auto`` takes the first of a dialect):

* PostgreSQL ``copy-binary``: ``COPY ... FROM STDIN (FORMAT binary)``, the Arrow batches encoded in the
  client by pgpq's Rust encoder and sent through psycopg's COPY on the chunk's connection.
  ``copy-csv``: the same COPY fed by pyarrow's C++ CSV writer.
* SQLite ``adbc``: the ADBC SQLite driver's bulk ingest of the Arrow table on the chunk's connection
  (the engine is then on ADBC, see ``Database``); ``executemany``: sqlite3, Python tuples.
* SQL Server ``fast-executemany`` (pyodbc's array binding) or plain ``executemany``.

Column orders come from ``clientes_ingest.db``; the tables' fields from ``rules.VALID_SCHEMA`` and
``rules.REJECT_SCHEMA``. Requires: pyarrow, the driver of the dialect, pgpq for ``copy-binary``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pgpq import ArrowToPostgresBinaryEncoder
from sqlalchemy.engine import Connection

from clientes_ingest.db import CLIENTES_COLUMNS, REJECT_COLUMNS, REJECT_FIELDS, VALID_FIELDS, resolve_writer


class BulkWriter(Protocol):
    """Appends parsed rows and rejects inside the caller's transaction."""

    def write_rows(self, conn: Connection, job_id: int, valid: pa.Table) -> int: ...

    def write_rejects(self, conn: Connection, job_id: int, chunk_no: int, rejects: pa.Table) -> int: ...


def _driver(conn: Connection) -> Any:
    """The DBAPI connection under a SQLAlchemy connection (psycopg, sqlite3 or pyodbc)."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the database connection is closed")
    return driver


def with_constants(table: pa.Table, fields: Sequence[str], constants: Sequence[tuple[str, int]]) -> pa.Table:
    """``table``'s ``fields`` preceded by int64 columns holding one constant each (job id, chunk number)."""
    columns = [pa.array(np.full(table.num_rows, value, dtype=np.int64)) for _, value in constants]
    names = [name for name, _ in constants]
    return pa.table(columns + [table.column(f) for f in fields], names=names + list(fields))


def clientes_rows(job_id: int, valid: pa.Table) -> pa.Table:
    """A block's valid rows as ``clientes`` columns (``CLIENTES_COLUMNS`` order and names)."""
    return with_constants(valid, VALID_FIELDS, [("JobId", job_id)]).rename_columns(CLIENTES_COLUMNS)


def reject_rows(job_id: int, chunk_no: int, rejects: pa.Table) -> pa.Table:
    """A block's rejects as ``ingest_rejects`` columns (``REJECT_COLUMNS`` order and names; chunk_no int32)."""
    data = with_constants(rejects, REJECT_FIELDS, [("job_id", job_id), ("chunk_no", chunk_no)])
    data = data.select(["job_id", "line_number", "chunk_no", "reason", "raw_line", "raw_length"])
    return data.set_column(2, "chunk_no", pc.cast(data.column("chunk_no"), pa.int32()))


class _PostgresCopy:
    """PostgreSQL ``COPY ... FROM STDIN`` of both tables; subclasses encode the Arrow table."""

    format = ""

    def _encode(self, data: pa.Table) -> Iterable[bytes | memoryview]:
        raise NotImplementedError

    def _copy(self, conn: Connection, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        sql = f"COPY {table} ({cols}) FROM STDIN (FORMAT {self.format})"
        with _driver(conn).cursor() as cursor, cursor.copy(sql) as copy:
            for piece in self._encode(data):
                copy.write(piece)
        return data.num_rows

    def write_rows(self, conn: Connection, job_id: int, valid: pa.Table) -> int:
        return self._copy(conn, "clientes", clientes_rows(job_id, valid))

    def write_rejects(self, conn: Connection, job_id: int, chunk_no: int, rejects: pa.Table) -> int:
        return self._copy(conn, "ingest_rejects", reject_rows(job_id, chunk_no, rejects))


class PostgresCopyWriter(_PostgresCopy):
    """PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)`` fed by pyarrow's C++ CSV writer."""

    format = "csv"
    _csv = pacsv.WriteOptions(include_header=False, quoting_style="needed")

    def _encode(self, data: pa.Table) -> Iterable[bytes | memoryview]:
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, self._csv)
        yield buffer.getbuffer()


class PostgresBinaryCopyWriter(_PostgresCopy):
    """PostgreSQL: ``COPY ... FROM STDIN (FORMAT binary)``, Arrow batches encoded by pgpq (no text step).

    Binary COPY needs each Arrow type to be the column's exact type: int64 -> BIGINT, int32 -> INTEGER,
    string -> VARCHAR, date32 -> DATE, bool -> BOOLEAN (``clientes_rows``/``reject_rows`` cast to them)."""

    format = "binary"

    def _encode(self, data: pa.Table) -> Iterable[bytes | memoryview]:
        encoder = ArrowToPostgresBinaryEncoder(data.schema)
        yield encoder.write_header()
        for batch in data.to_batches():
            yield encoder.write_batch(batch)
        yield encoder.finish()


class ExecutemanyWriter:
    """SQLite (sqlite3) and SQL Server (pyodbc, fast_executemany): one DBAPI ``executemany`` a block."""

    def __init__(self, *, fast_executemany: bool = False, iso_dates: bool = False) -> None:
        self.fast_executemany = fast_executemany
        self.iso_dates = iso_dates

    def _rows(self, data: pa.Table) -> Iterable[tuple[Any, ...]]:
        columns = []
        for column in data.columns:
            if self.iso_dates and pa.types.is_date(column.type):
                column = pc.cast(column, pa.string())  # ISO text: sqlite3's date adapter is deprecated
            columns.append(column.to_pylist())
        return list(zip(*columns, strict=True))

    def _insert(self, conn: Connection, table: str, columns: Sequence[str], data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        quote = conn.dialect.identifier_preparer.quote
        sql = f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) VALUES " \
              f"({', '.join('?' * len(columns))})"
        cursor = _driver(conn).cursor()
        try:
            if self.fast_executemany:
                cursor.fast_executemany = True
            cursor.executemany(sql, self._rows(data))
        finally:
            cursor.close()
        return data.num_rows

    def write_rows(self, conn: Connection, job_id: int, valid: pa.Table) -> int:
        return self._insert(conn, "clientes", CLIENTES_COLUMNS, clientes_rows(job_id, valid))

    def write_rejects(self, conn: Connection, job_id: int, chunk_no: int, rejects: pa.Table) -> int:
        return self._insert(conn, "ingest_rejects", REJECT_COLUMNS, reject_rows(job_id, chunk_no, rejects))


class AdbcIngestWriter:
    """SQLite through ADBC: ``adbc_ingest`` (append) of the Arrow table on the chunk's own connection.

    The connection must be the ADBC SQLite driver's (``Database(url, writer="adbc")``); the ingest runs
    inside the transaction the engine began (BEGIN IMMEDIATE), so it commits or rolls back with it."""

    def _ingest(self, conn: Connection, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        driver = _driver(conn)
        if not hasattr(driver, "adbc_connection"):
            raise RuntimeError("the adbc writer needs the ADBC SQLite engine: build Database(url, writer='adbc')")
        with driver.cursor() as cursor:
            cursor.adbc_ingest(table, data, mode="append")
        return data.num_rows

    def write_rows(self, conn: Connection, job_id: int, valid: pa.Table) -> int:
        return self._ingest(conn, "clientes", clientes_rows(job_id, valid))

    def write_rejects(self, conn: Connection, job_id: int, chunk_no: int, rejects: pa.Table) -> int:
        return self._ingest(conn, "ingest_rejects", reject_rows(job_id, chunk_no, rejects))


def writer_for(dialect: str, choice: str = "auto") -> BulkWriter:
    """The bulk writer of a dialect (``postgresql``, ``sqlite``, ``mssql``) for a choice (``db.WRITERS``)."""
    name = resolve_writer(dialect, choice)
    if name == "copy-binary":
        return PostgresBinaryCopyWriter()
    if name == "copy-csv":
        return PostgresCopyWriter()
    if name == "adbc":
        return AdbcIngestWriter()
    if dialect == "sqlite":
        return ExecutemanyWriter(iso_dates=True)
    return ExecutemanyWriter(fast_executemany=name == "fast-executemany")
