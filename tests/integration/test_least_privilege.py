"""The pipeline needs no DDL at run time (docs/security.md, "SQL Server").

Once an owner has created the tables, a login that may only read and write them loads a file: the
PostgreSQL counterpart of SQL Server's `clientes_app` (db_datareader + db_datawriter, created by
sql/mssql-app-login.sql), exercising the same registration, chunk load and finalize code.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import load_file, rows

from clientes_ingest.db import Database, ingest_jobs
from clientes_ingest.devtools.generator import generate

pytestmark = pytest.mark.postgres


def test_a_read_write_login_loads_a_file_once_the_owner_created_the_tables(pg_url: str, tmp_path: Path) -> None:
    role = f"clientes_app_{uuid.uuid4().hex[:8]}"
    owner = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")  # pg_url: the tables exist, made by the owner
    with owner.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.exec_driver_sql(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.exec_driver_sql(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    app = Database(sa.engine.make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False))
    try:
        # The login really has no DDL: the load below cannot have created or altered anything.
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), app.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE ddl_probe (i int)")
        path = tmp_path / "CLIENTES_IN_0425.dat"
        generate(path, lines=3000, seed=11)
        # What a run does: ensure_schema (only checks, the tables exist), register, load chunks, finalize.
        registration = load_file(app, path, tmp_path / "store", chunk_size=32 << 10)
        assert len(registration.pending) > 1
        with app.engine.connect() as conn:
            job = conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.id == registration.job_id)).mappings().one()
        assert job["status"] == "completed_with_rejects"  # the generated file has ~20% corrupt lines
        loaded = rows(app, registration.job_id)
        assert len(loaded) == job["rows_loaded"] > 0
    finally:
        app.dispose()
        with owner.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        owner.dispose()
