"""Bulk writers per dialect: append a block's parsed rows and rejects inside the caller's transaction.

PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)`` fed by pyarrow's C++ CSV writer (psycopg 3). SQLite
(sqlite3) and SQL Server (pyodbc with ``fast_executemany``): one DBAPI ``executemany`` per block.
Column orders come from ``clientes_ingest.db``; the tables' fields from ``records.VALID_SCHEMA`` and
``records.REJECT_SCHEMA``. Requires: pyarrow and the driver of the dialect.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy.engine import Connection

from clientes_ingest.db import CLIENTES_COLUMNS, REJECT_COLUMNS, REJECT_FIELDS, VALID_FIELDS


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


class PostgresCopyWriter:
    """PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)`` fed by pyarrow's C++ CSV writer."""

    _csv = pacsv.WriteOptions(include_header=False, quoting_style="needed")

    def _copy(self, conn: Connection, table: str, columns: Sequence[str], data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, self._csv)
        cols = ", ".join(f'"{c}"' for c in columns)
        with _driver(conn).cursor() as cursor, cursor.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())
        return data.num_rows

    def write_rows(self, conn: Connection, job_id: int, valid: pa.Table) -> int:
        return self._copy(conn, "clientes", CLIENTES_COLUMNS, with_constants(valid, VALID_FIELDS, [("j", job_id)]))

    def write_rejects(self, conn: Connection, job_id: int, chunk_no: int, rejects: pa.Table) -> int:
        data = with_constants(rejects, REJECT_FIELDS, [("j", job_id), ("c", chunk_no)])
        data = data.select(["j", "line_number", "c", "reason", "raw_line", "raw_length"])
        return self._copy(conn, "ingest_rejects", REJECT_COLUMNS, data)


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
        data = with_constants(valid, VALID_FIELDS, [("j", job_id)])
        return self._insert(conn, "clientes", CLIENTES_COLUMNS, data)

    def write_rejects(self, conn: Connection, job_id: int, chunk_no: int, rejects: pa.Table) -> int:
        data = with_constants(rejects, REJECT_FIELDS, [("j", job_id), ("c", chunk_no)])
        data = data.select(["j", "line_number", "c", "reason", "raw_line", "raw_length"])
        return self._insert(conn, "ingest_rejects", REJECT_COLUMNS, data)


def writer_for(dialect: str) -> BulkWriter:
    """The bulk writer of a dialect name (``postgresql``, ``sqlite``, ``mssql``)."""
    if dialect == "postgresql":
        return PostgresCopyWriter()
    if dialect == "sqlite":
        return ExecutemanyWriter(iso_dates=True)
    if dialect == "mssql":
        return ExecutemanyWriter(fast_executemany=True)
    raise ValueError(f"no bulk writer for dialect {dialect!r}: use postgresql, mssql or sqlite")
