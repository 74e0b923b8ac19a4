"""`clientes-ingest purge` as a real process on SQLite, local storage and Prefect's ephemeral API: a dry run
names what would go and changes nothing, the purge removes it and says so, and a purged file loads again.
(Each process starts its own ephemeral Prefect API: minutes on a busy machine, hence two of them only.)"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import load_file, rejects, rows

from clientes_ingest.cli import main
from clientes_ingest.db import Database, ingest_jobs, utcnow
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage


def clientes_ingest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CLIENTES_"))}
    env.update({"PREFECT_HOME": str(cwd / ".prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "CLIENTES_RETRY_BACKOFF_SECONDS": "0",
                # Each process starts its own ephemeral API: on a machine shared by many test runs that
                # can take minutes.
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "400"})
    exe = Path(sys.executable).with_name("clientes-ingest")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=500)


def test_bad_options_are_usage_errors(sqlite_url: str, capsys: object) -> None:
    assert main(["purge", "--db", sqlite_url, "--older-than", "30"]) == 2
    assert main(["purge", "--db", sqlite_url, "--older-than", "0d"]) == 2
    assert main(["purge", "--db", sqlite_url, "--limit", "0"]) == 2


@pytest.mark.timeout(1200)
def test_dry_run_then_purge_then_the_file_loads_again(tmp_path: Path, sqlite_url: str) -> None:
    db = Database(sqlite_url)
    store = tmp_path / "store"
    paths = [tmp_path / f"CLIENTES_IN_0{m}25.dat" for m in (1, 2, 3)]
    ids = []
    for seed, path in enumerate(paths, start=1):
        generate(path, lines=500, seed=seed)
        ids.append(load_file(db, path, store).job_id)
    with db.engine.begin() as conn:  # the first two finished 40 days ago
        conn.execute(ingest_jobs.update().where(ingest_jobs.c.id.in_(ids[:2]))
                     .values(finished_at=utcnow() - dt.timedelta(days=40)))
    counts = {j: (len(rows(db, j)), len(rejects(db, j))) for j in ids}
    objects = {j: LocalStorage(store).exists(_uri(db, j)) for j in ids}
    assert all(objects.values())
    common = ("--db", sqlite_url, "--storage-root", str(store))

    dry = clientes_ingest(tmp_path, "purge", "--dry-run", *common)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: nothing deleted" in dry.stdout
    assert (f"2 job(s): would remove 2 stored file(s), {counts[ids[0]][1] + counts[ids[1]][1]:,} rejects, "
            f"{counts[ids[0]][0] + counts[ids[1]][0]:,} rows") in dry.stdout
    assert {j: (len(rows(db, j)), len(rejects(db, j))) for j in ids} == counts

    done = clientes_ingest(tmp_path, "purge", "--older-than", "30d", *common)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"2 job(s): removed 2 stored file(s), {counts[ids[0]][1] + counts[ids[1]][1]:,} rejects, "
            f"{counts[ids[0]][0] + counts[ids[1]][0]:,} rows") in done.stdout
    assert [LocalStorage(store).exists(_uri(db, j)) for j in ids] == [False, False, True]
    assert rows(db, ids[0]) == rows(db, ids[1]) == [] and len(rows(db, ids[2])) == counts[ids[2]][0]

    # The claim went with the rows: the same file loads again as a new job (a run, as the CLI does it).
    assert load_file(db, paths[0], store).job_id == ids[-1] + 1
    assert rows(db, ids[-1] + 1) and len(rows(db, ids[-1] + 1)) == counts[ids[0]][0]


def _uri(db: Database, job_id: int) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(sa.select(ingest_jobs.c.source_uri).where(ingest_jobs.c.id == job_id)).scalar_one())
