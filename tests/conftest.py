"""Shared pytest fixtures: fresh databases (SQLite files and a private database on the local
PostgreSQL server), the Prefect test harness, and small CLIENTES files.

Requires: PostgreSQL on 127.0.0.1:5432 with trust auth (``CLIENTES_TEST_PG_URL`` overrides the admin
URL); for the ``mssql`` variants, a SQL Server admin URL in ``CLIENTES_TEST_MSSQL_URL``
(docs/sqlserver-checks.md). Retry back-off is set to 0 s so retried tasks do not slow the suite.
"""

from __future__ import annotations

import os

os.environ.setdefault("CLIENTES_RETRY_BACKOFF_SECONDS", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.aws import *  # noqa: F401,F403  (moto server fixtures for every test folder)

PG_ADMIN_URL = os.environ.get("CLIENTES_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

SAMPLE_LINES = [
    "María|Gómez|45678901|Activo|11/13/2021|true|false",
    "Juan|O'Kon|12345678|Inactivo|8/9/2022|false|",
    "Ana|Pérez|12345678|Activo|2/30/2020|true|true",  # fecha_ingreso: not a calendar date
    "Luis|Núñez|87654321|Activo|1/2/2019||",  # es_pep: empty
    "",  # blank
    "x|y|z",  # field_count
    "José|D'Amore|11111111|Activo|12/31/2023|TRUE|False",
]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[str]:
    """A private PostgreSQL database for this test session (created and dropped here)."""
    name = f"clientes_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    from clientes_ingest.db import Database

    Database(url).dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL database with an empty schema."""
    from clientes_ingest.db import Database, metadata

    db = Database(pg_database)
    metadata.drop_all(db.engine)
    metadata.create_all(db.engine)
    return pg_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'clientes.db'}"


MSSQL_ENV = "CLIENTES_TEST_MSSQL_URL"
MSSQL_SKIP = (f"{MSSQL_ENV} is not set: no SQL Server here. With Docker: docker compose up -d --wait sqlserver, "
              "then the command in docs/sqlserver-checks.md")


@pytest.fixture(scope="session")
def mssql_database() -> Iterator[str]:
    """A private database on the SQL Server named by CLIENTES_TEST_MSSQL_URL (created and dropped here)."""
    admin_url = os.environ.get(MSSQL_ENV)
    if not admin_url:
        pytest.skip(MSSQL_SKIP)
    name = f"clientes_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE [{name}]")
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    from clientes_ingest.db import Database

    Database(url).dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
        conn.exec_driver_sql(f"DROP DATABASE [{name}]")
    admin.dispose()


@pytest.fixture
def mssql_url(mssql_database: str) -> str:
    """The session's SQL Server database with an empty schema."""
    from clientes_ingest.db import Database, metadata

    db = Database(mssql_database)
    metadata.drop_all(db.engine)
    metadata.create_all(db.engine)
    return mssql_database


@pytest.fixture(params=["sqlite", "postgresql", pytest.param("mssql", marks=pytest.mark.mssql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on SQLite, on PostgreSQL and, when CLIENTES_TEST_MSSQL_URL names one, on SQL
    Server (``pytest -m mssql`` runs only those; without the variable they are skipped, saying why)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'clientes.db'}"
    if request.param == "mssql":
        return str(request.getfixturevalue("mssql_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API (SQLite-backed) for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    # A busy shared machine can take minutes to start the server subprocess: a slow start is not a failure.
    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture
def sample_file(tmp_path: Path) -> Path:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    path.write_text("\n".join(SAMPLE_LINES) + "\n", encoding="utf-8")
    return path
