"""`clientes-ingest recover` as a real process on SQLite and Prefect's ephemeral API: nothing to do is
exit 0, an abandoned job is resumed (only its missing chunks) and completes."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from support.loading import load_file, partly_loaded, rejects, rows

from clientes_ingest import job_queries, jobs
from clientes_ingest.cli import main
from clientes_ingest.db import Database, ingest_chunks
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage


def recover(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CLIENTES_"))}
    env.update({"PREFECT_HOME": str(cwd / ".prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "CLIENTES_RETRY_BACKOFF_SECONDS": "0"})
    exe = Path(sys.executable).with_name("clientes-ingest")
    return subprocess.run([str(exe), "recover", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def test_nothing_to_recover_is_exit_0(tmp_path: Path, sqlite_url: str) -> None:
    done = recover(tmp_path, "--db", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no abandoned jobs; nothing to do"


def test_bad_options_are_usage_errors(sqlite_url: str) -> None:
    assert main(["recover", "--db", sqlite_url, "--limit", "0"]) == 2
    assert main(["recover", "--db", sqlite_url, "--lease-seconds", "-1"]) == 2


def dead_run(db: Database, path: Path, storage: LocalStorage, seed: int) -> jobs.Registration:
    """A run that died an hour ago after committing the first two chunks of a generated file."""
    generate(path, lines=3000, seed=seed)
    return partly_loaded(db, path, storage, chunk_size=16 * 1024, loaded=2, block_size=8192,
                         heartbeat_age=dt.timedelta(hours=1))


def test_an_abandoned_job_is_resumed_and_completes(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    db = Database(sqlite_url)
    db.ensure_schema()
    store = tmp_path / "store"
    registration = dead_run(db, path, LocalStorage(store), seed=21)
    total = len(registration.pending)

    done = recover(tmp_path, "--db", sqlite_url, "--storage-root", str(store), "--lease-seconds", "600")

    assert done.returncode == 0, done.stdout + done.stderr
    # Idle an hour plus the command's start-up (up to 10 minutes on a loaded machine).
    assert re.fullmatch(rf"job {registration.job_id} \(CLIENTES_IN_0425.dat, running, "
                        rf"idle (?:3[6-9]|4[01])\d\ds, 2/{total} "
                        rf"chunks done\): resumed, now completed_with_rejects\n", done.stdout), done.stdout
    summary = job_queries.get_job(db.engine, registration.job_id)
    assert (summary.status, summary.chunks_done) == ("completed_with_rejects", total)
    with db.engine.connect() as conn:
        attempts = dict(conn.execute(sa.select(ingest_chunks.c.chunk_no, ingest_chunks.c.attempts)).all())
    assert set(attempts.values()) == {1}  # the two committed chunks were not loaded again
    clean = Database(f"sqlite:///{tmp_path / 'clean.db'}")
    clean_job = load_file(clean, path, tmp_path / "clean-store").job_id
    assert rows(db) == rows(clean, clean_job) and rejects(db) == rejects(clean, clean_job)
    # Done: a second recovery finds nothing.
    again = recover(tmp_path, "--db", sqlite_url, "--storage-root", str(store), "--lease-seconds", "600")
    assert (again.returncode, again.stdout.strip()) == (0, "no abandoned jobs; nothing to do")


def test_a_job_that_cannot_be_resumed_is_exit_1_and_the_others_still_complete(tmp_path: Path, sqlite_url: str) -> None:
    db = Database(sqlite_url)
    db.ensure_schema()
    store = tmp_path / "store"
    storage = LocalStorage(store)
    lost = dead_run(db, tmp_path / "CLIENTES_IN_0425.dat", storage, seed=22)
    good = dead_run(db, tmp_path / "CLIENTES_IN_0525.dat", storage, seed=23)
    stored = [p for p in store.rglob("*") if p.is_file() and p.name.endswith("CLIENTES_IN_0425.dat")]
    assert len(stored) == 1
    stored[0].unlink()  # the stored copy of the first file is gone: its job cannot be resumed

    done = recover(tmp_path, "--db", sqlite_url, "--storage-root", str(store), "--lease-seconds", "600")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: 1 of 2 abandoned job(s) could not be resumed" in done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(f"job {lost.job_id} (CLIENTES_IN_0425.dat, running") and "): failed: " in line
               for line in lines), done.stdout
    assert any(line.startswith(f"job {good.job_id} (CLIENTES_IN_0525.dat, running")
               and line.endswith("resumed, now completed_with_rejects") for line in lines), done.stdout
    assert job_queries.get_job(db.engine, good.job_id).status == "completed_with_rejects"
    assert job_queries.get_job(db.engine, lost.job_id).status != "completed_with_rejects"
