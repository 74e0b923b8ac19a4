"""The schema is generated from the metadata (sql/ must not drift), compiles for SQL Server, and the
SQL Server path fails fast and clearly when there is no server (no SQL Server runs on this machine)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from clientes_ingest import db, writers
from clientes_ingest.cli import main
from clientes_ingest.dialects import dialect_for
from clientes_ingest.loader import lock_chunk

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@pytest.mark.parametrize("dialect", db.DIALECTS)
def test_sql_files_match_metadata(dialect: str) -> None:
    committed = (SQL_DIR / f"{dialect}.sql").read_text(encoding="utf-8")
    assert committed == db.schema_ddl(dialect), (
        f"sql/{dialect}.sql drifted from clientes_ingest.db.metadata: run `clientes-ingest schema --write-dir sql`")


def test_mssql_ddl_has_the_brief_types() -> None:
    ddl = db.schema_ddl("mssql")
    table = ddl[ddl.index("CREATE TABLE clientes"):].split(";")[0]
    for column in ("[NombreCompleto] NVARCHAR(100) NOT NULL", "[DNI] BIGINT NOT NULL", "[Estado] VARCHAR(10) NOT NULL",
                   "[FechaIngreso] DATE NOT NULL", "[EsPEP] BIT NOT NULL", "[EsSujetoObligado] BIT NULL",
                   "[FechaCreacion] DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
                   "PRIMARY KEY ([JobId], [LineNumber])"):
        assert column in table
    assert "IDENTITY" in ddl  # ingest_jobs.id


def test_every_job_statement_compiles_for_mssql() -> None:
    dialect = dialect_for("mssql")
    statements = [
        db.ingest_jobs.insert().values(source_uri="s3://b/k", file_name="k", status="running"),
        db.ingest_chunks.update().where(db.ingest_chunks.c.job_id == 1)
        .values(attempts=db.ingest_chunks.c.attempts + 1),
        lock_chunk(1, 0),
        sa.select(db.ingest_rejects).where(db.ingest_rejects.c.job_id == 1).order_by(db.ingest_rejects.c.line_number)
        .offset(100).limit(50),
        db.clientes.insert(),
        db.ingest_rejects.insert(),
    ]
    compiled = [str(s.compile(dialect=dialect)) for s in statements]
    assert "FROM ingest_chunks WITH (UPDLOCK, ROWLOCK)" in compiled[2]  # the chunk lock is real on SQL Server
    assert str(lock_chunk(1, 0).compile(dialect=dialect_for("postgresql"))).endswith("FOR UPDATE")
    assert "OFFSET" in compiled[3] and "FETCH FIRST" in compiled[3]  # SQL Server 2012+ paging
    assert "INSERT INTO clientes ([JobId], [LineNumber], [NombreCompleto]" in compiled[4]


def test_mssql_writer_uses_fast_executemany() -> None:
    writer = writers.writer_for("mssql")
    assert isinstance(writer, writers.ExecutemanyWriter) and writer.fast_executemany and not writer.iso_dates
    engine = db.create_engine(sa.engine.make_url("mssql+pyodbc://u:p@127.0.0.1:1/clientes?driver=FreeTDS"))
    assert engine.dialect.fast_executemany is True
    assert isinstance(engine.dialect, mssql.pyodbc.MSDialect_pyodbc)


def test_pyodbc_to_a_closed_port_fails_fast_and_clearly() -> None:
    # pyodbc is a dependency; loading it needs unixODBC and the FreeTDS driver, which .ci/run installs.
    url = "mssql+pyodbc://sa:Sup3rSecret!@127.0.0.1:1/clientes?driver=FreeTDS&TDS_Version=7.4&LoginTimeout=5"
    database = db.Database(url)
    started = time.perf_counter()
    with pytest.raises(db.DatabaseUnavailable) as info:
        database.check()
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert message.startswith("database mssql+pyodbc://sa:***@127.0.0.1:1/clientes")
    assert "unreachable" in message and "Sup3rSecret" not in message
    assert elapsed < 30
    # The driver itself loaded and spoke TDS: the failure is FreeTDS's own "server unavailable"
    # (SQLSTATE 08S01/08001), not unixODBC's "can't open lib" of a missing driver.
    cause = info.value.__cause__ or info.value.__context__
    orig = getattr(cause, "orig", cause)
    assert orig is not None, "the original driver error was lost"
    state, text = orig.args[0], str(orig.args[-1])
    assert "can't open lib" not in text.lower(), f"the FreeTDS ODBC driver did not load: {text}"
    assert state in ("08S01", "08001") and "[FreeTDS]" in text, text
    assert "Adaptive Server is unavailable" in text or "Unable to connect" in text, text


def test_a_missing_odbc_driver_is_told_apart() -> None:
    """The check above could not pass with the driver missing: unixODBC's error differs (and is named)."""
    database = db.Database("mssql+pyodbc://sa:x@127.0.0.1:1/clientes?driver=NoSuchDriver")
    with pytest.raises(db.DatabaseUnavailable, match="ODBC driver not installed") as info:
        database.check()
    cause = info.value.__cause__ or info.value.__context__
    orig = getattr(cause, "orig", cause)
    assert orig is not None and "can't open lib" in str(orig.args[-1]).lower()


def test_cli_schema_prints_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--dialect", "postgresql"]) == 0
    assert '"NombreCompleto" VARCHAR(100) NOT NULL' in capsys.readouterr().out


def test_cli_schema_apply_is_idempotent(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--apply", "--db", db_url]) == 0
    assert main(["schema", "--apply", "--db", db_url]) == 0
    inspector = sa.inspect(db.Database(db_url).engine)
    assert {"clientes", "ingest_jobs", "ingest_chunks", "ingest_rejects", "ingest_file_claims"} <= set(
        inspector.get_table_names())
