"""Every statement the pipeline issues, compiled for SQL Server and parsed as T-SQL (sqlglot's ``tsql``
dialect), and ``sql/mssql.sql`` parsed the same way: there is no SQL Server here, so this is what checks
the production dialect's SQL text (the real check is ``pytest -m mssql``, docs/sqlserver-checks.md).

The statements are not listed by hand: the job lifecycle (load, rerun, resume, reject paging, recovery,
lease, retention) runs for real on SQLite while every SQLAlchemy Core statement it executes is captured,
then each is compiled with the ``mssql+pyodbc`` dialect. The bulk insert of the SQL Server writer is raw
SQL built from the dialect's quoting; it is captured from the writer itself.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.sql import ClauseElement
from support.loading import load_file, partly_loaded

from clientes_ingest import db, job_queries, jobs, lease, recovery, retention, writers
from clientes_ingest.devtools.generator import generate
from clientes_ingest.dialects import dialect_for
from clientes_ingest.storage import LocalStorage

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# Valid in sqlglot's lenient parser, invalid on SQL Server: none of these may reach it.
NOT_TSQL = re.compile(r"\bLIMIT\b|\bNULLS (FIRST|LAST)\b|\bFOR UPDATE\b|\bRETURNING\b|\bON CONFLICT\b|\bILIKE\b|"
                      r"\bBOOLEAN\b|\bSERIAL\b|\bAUTOINCREMENT\b|\bTRUE\b|\bFALSE\b|\"", re.IGNORECASE)


def parse_tsql(sql: str) -> list[Any]:
    parsed = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert parsed and all(p is not None for p in parsed), sql
    return parsed


def test_the_parser_refuses_broken_tsql() -> None:
    """The check has teeth: a truncated statement and PostgreSQL's row lock do not parse as T-SQL."""
    for bad in ("SELECT a FROM t WHERE (", "SELECT a FROM t FOR UPDATE", "INSERT INTO t (a VALUES (1)"):
        with pytest.raises(sqlglot.errors.ParseError):
            parse_tsql(bad)
    assert NOT_TSQL.search("SELECT a FROM t ORDER BY a NULLS FIRST LIMIT 5")


def test_sql_mssql_parses_as_tsql() -> None:
    text = (SQL_DIR / "mssql.sql").read_text(encoding="utf-8")
    statements = [s for s in parse_tsql(text)]
    creates = [s for s in statements if isinstance(s, sqlglot.exp.Create) and s.kind == "TABLE"]
    assert sorted(c.this.this.name for c in creates) == sorted(t.name for t in db.metadata.sorted_tables)
    assert not NOT_TSQL.search(text.replace("'", ""))


def captured_statements(tmp_path: Path) -> list[ClauseElement]:
    """Run the job lifecycle on SQLite and return every Core statement it executed."""
    database = db.Database(f"sqlite:///{tmp_path / 'capture.db'}")
    seen: list[ClauseElement] = []

    def capture(conn: Any, clause: Any, *args: Any) -> None:
        if isinstance(clause, ClauseElement):
            seen.append(clause)

    sa.event.listen(database.engine, "before_execute", capture)
    store = tmp_path / "store"
    files = []
    for seed in (1, 2, 3):
        files.append(tmp_path / f"CLIENTES_IN_0{seed}25.dat")
        generate(files[-1], lines=300, error_rate=0.3, seed=seed)
    first = load_file(database, files[0], store, chunk_size=4096).job_id
    load_file(database, files[0], store, chunk_size=4096)  # already loaded
    load_file(database, files[0], store, chunk_size=4096, force=True)
    job_queries.get_job(database.engine, first)
    job_queries.list_jobs(database.engine)
    job_queries.job_chunks(database.engine, first)
    job_queries.list_rejects(database.engine, first, after=3, limit=5, reason="fecha_ingreso")
    list(job_queries.reject_pages(database.engine, first, page_size=7))
    job_queries.reject_line_at(database.engine, first, 4, reason="dni")
    pending = jobs.create_pending_job(database.engine, "file:///x/CLIENTES_IN_0125.dat", "CLIENTES_IN_0125.dat")
    staged = jobs.register_job  # the webhook's pre-registered job, planned by its run
    from clientes_ingest.staging import stage_source

    staged_file = stage_source(str(files[1]), LocalStorage(store), 4096)
    staged(database.engine, staged_file, job_id=pending)
    jobs.fail_job(database.engine, pending, "boom")
    dead = partly_loaded(database, files[2], LocalStorage(store), chunk_size=4096, loaded=1,
                         heartbeat_age=dt.timedelta(hours=1))
    lease.beat(database.engine, dead.job_id)
    recovery.abandoned_jobs(database.engine, 60)
    jobs.register_job(database.engine, stage_source(str(files[2]), LocalStorage(store), 4096), lease_seconds=1)
    with database.engine.begin() as conn:
        conn.execute(db.ingest_jobs.update().values(finished_at=db.utcnow() - dt.timedelta(days=40)))
    cutoff = db.utcnow() - dt.timedelta(days=30)
    retention.purge_old_jobs(database.engine, lambda uri: LocalStorage(store), cutoff, dry_run=True)
    retention.purge_old_jobs(database.engine, lambda uri: LocalStorage(store), cutoff, keep_rows=True, batch_lines=50)
    retention.purge_old_jobs(database.engine, lambda uri: LocalStorage(store), cutoff, batch_lines=50)
    sa.event.remove(database.engine, "before_execute", capture)
    database.dispose()
    return seen


def compile_mssql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=dialect_for("mssql"), compile_kwargs={"render_postcompile": True}))


def test_every_statement_the_pipeline_issues_parses_as_tsql(tmp_path: Path) -> None:
    statements = captured_statements(tmp_path)
    compiled = sorted({compile_mssql(s) for s in statements})
    kinds = {s.split()[0].upper() for s in compiled}
    assert {"SELECT", "INSERT", "UPDATE", "DELETE"} <= kinds
    assert len(compiled) >= 30, f"only {len(compiled)} distinct statements were captured"
    # The statements that matter most on SQL Server were among them.
    assert any("WITH (UPDLOCK, ROWLOCK)" in s for s in compiled)  # the chunk lock
    assert any(s.startswith("DELETE FROM clientes") for s in compiled)  # retention's batched deletes
    assert any("OFFSET" in s and "FETCH FIRST" in s for s in compiled)  # reject_line_at's paging
    failures = []
    for sql in compiled:
        try:
            parse_tsql(sql)
        except sqlglot.errors.ParseError as exc:
            failures.append(f"{sql}\n  -> {str(exc).splitlines()[0]}")
        if NOT_TSQL.search(sql):
            failures.append(f"{sql}\n  -> holds syntax SQL Server does not have: {NOT_TSQL.search(sql)}")
    assert failures == [], "\n".join(failures)


def test_the_ddl_statements_the_code_issues_parse_as_tsql() -> None:
    dialect = dialect_for("mssql")
    added = [db.add_column_statement(dialect, table, column) for table in db.metadata.sorted_tables
             for column in table.columns if column.nullable and not column.primary_key]
    assert "ALTER TABLE ingest_jobs ADD purged_at DATETIME NULL" in added
    for sql in added:
        assert "COLUMN" not in sql  # T-SQL's ALTER TABLE has no ADD COLUMN
        parse_tsql(sql)


class RecordingCursor:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink
        self.fast_executemany = False

    def executemany(self, sql: str, rows: Any) -> None:
        self.sink.append(sql)

    def close(self) -> None:
        pass


def test_the_sql_server_bulk_inserts_parse_as_tsql() -> None:
    sink: list[str] = []
    driver = type("Driver", (), {"cursor": lambda self: RecordingCursor(sink)})()
    conn: Any = type("Conn", (), {"dialect": dialect_for("mssql"),
                                  "connection": type("Pool", (), {"driver_connection": driver})()})()
    writer = writers.writer_for("mssql")
    valid = pa.table({"line_number": [1], "nombre_completo": ["A B"], "dni": [1], "estado": ["Activo"],
                      "fecha_ingreso": pa.array([dt.date(2020, 1, 1)]), "es_pep": [True],
                      "es_sujeto_obligado": pa.array([None], pa.bool_())})
    rejects = pa.table({"line_number": [2], "reason": ["dni"], "raw_line": ["x"], "raw_length": [1]})
    writer.write_rows(conn, 1, valid)
    writer.write_rejects(conn, 1, 0, rejects)
    assert [s.split("(")[0].strip() for s in sink] == ["INSERT INTO clientes", "INSERT INTO ingest_rejects"]
    for sql in sink:
        parse_tsql(sql)
        assert not NOT_TSQL.search(sql)
