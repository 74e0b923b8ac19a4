"""clientes_ingest.sqlite_adbc: the ADBC SQLite engine waits for another process's lock, as sqlite3 does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from clientes_ingest.sqlite_adbc import create_adbc_engine

# Another process (locks of two SQLite libraries in ONE process do not see each other) holds the file's
# exclusive lock for 1.5 s, as a writer of another run does while it commits.
HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute('CREATE TABLE t (x INTEGER)')
conn.execute('BEGIN EXCLUSIVE')
conn.execute('INSERT INTO t VALUES (1)')
print('locked', flush=True)
time.sleep(1.5)
conn.execute('COMMIT')
"""


def test_a_new_connection_waits_for_another_processes_lock_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "clientes.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        engine = create_adbc_engine(sa.make_url(f"sqlite:///{path}"))
        started = time.monotonic()
        with engine.connect() as conn:  # its set-up PRAGMAs need the lock: they wait, not 'database is locked'
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert time.monotonic() - started >= 0.5
        engine.dispose()
    finally:
        assert holder.wait(timeout=30) == 0
