"""Fixtures of the fault tests: one generated CLIENTES file and its clean single-run reference tables,
private PostgreSQL databases, and the environment of a ``clientes-ingest`` child process that reports
to the session's Prefect test API.

Requires: PostgreSQL on 127.0.0.1:5432 (trust auth); the ``prefect_harness`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultkit import Reference, private_databases
from support.loading import load_file, rejects, rows

from clientes_ingest.db import Database
from clientes_ingest.devtools.generator import generate

FAULT_LINES = 80_000  # ~7.6 MB: 15 chunks of 512 KB, a few seconds of loading in a child process


@pytest.fixture(scope="session")
def fault_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fault-file") / "CLIENTES_IN_0425.dat"
    generate(path, lines=FAULT_LINES, seed=7)
    return path


@pytest.fixture(scope="session")
def reference(fault_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One chunk, no Prefect, a database of its own: what every faulty run must end up with."""
    with private_databases() as new_database:
        db = Database(new_database())
        registration = load_file(db, fault_file, tmp_path_factory.mktemp("reference-store"), chunk_size=1 << 30,
                                 block_size=1 << 20)
        result = Reference(fault_file, rows(db, registration.job_id), rejects(db, registration.job_id))
    assert len(result.rows) + len(result.rejects) == FAULT_LINES
    return result


@pytest.fixture
def new_pg() -> Iterator[Callable[[], str]]:
    """Call it for a fresh empty PostgreSQL database (dropped after the test)."""
    with private_databases() as create:
        yield create


@pytest.fixture
def child_env(prefect_harness: None, tmp_path: Path) -> dict[str, str]:
    """Environment of a pipeline child process: the session's Prefect API, no inherited CLIENTES_/AWS_
    settings, instant retries, small chunks and blocks so a run spans many chunks."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLIENTES_", "AWS_", "PREFECT_"))}
    env.update({
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "CLIENTES_RETRY_BACKOFF_SECONDS": "0",
        "CLIENTES_STORAGE_ROOT": str(tmp_path / "store"),
        "CLIENTES_CHUNK_SIZE": "512KiB",
        "CLIENTES_BLOCK_SIZE": "32KiB",
        "PYTHONUNBUFFERED": "1",
    })
    return env
