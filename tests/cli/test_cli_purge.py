"""`clientes-ingest purge` (its ``main``, in this process, against the Prefect test API) on SQLite and local
storage: a dry run names what would go and changes nothing, the purge removes it and says so, a second
purge has nothing to do, and a purged file loads again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.loading import load_file, rejects, rows

from clientes_ingest.cli import main
from clientes_ingest.db import Database, ingest_jobs, utcnow
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage


def clientes_ingest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The command in this process, against the session's Prefect test API (a process of its own would start
    an ephemeral API, which takes minutes on a busy shared machine); its exit code and output."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_bad_options_are_usage_errors(sqlite_url: str, capsys: object) -> None:
    assert main(["purge", "--db", sqlite_url, "--older-than", "30"]) == 2
    assert main(["purge", "--db", sqlite_url, "--older-than", "0d"]) == 2
    assert main(["purge", "--db", sqlite_url, "--limit", "0"]) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_dry_run_then_purge_then_the_file_loads_again(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the command sets in its environment, restored after the test.
    for name, value in (("PREFECT_LOGGING_LEVEL", "WARNING"), ("CLIENTES_DB_URL", sqlite_url),
                        ("CLIENTES_STORAGE_ROOT", str(tmp_path / "store")),
                        ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")):
        monkeypatch.setenv(name, value)
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

    code, dry = clientes_ingest(capsys, "purge", "--dry-run", *common)
    assert code == 0, dry
    assert "dry run: nothing deleted" in dry
    assert (f"2 job(s): would remove 2 stored file(s), {counts[ids[0]][1] + counts[ids[1]][1]:,} rejects, "
            f"{counts[ids[0]][0] + counts[ids[1]][0]:,} rows") in dry
    assert {j: (len(rows(db, j)), len(rejects(db, j))) for j in ids} == counts

    code, done = clientes_ingest(capsys, "purge", "--older-than", "30d", *common)
    assert code == 0, done
    assert (f"2 job(s): removed 2 stored file(s), {counts[ids[0]][1] + counts[ids[1]][1]:,} rejects, "
            f"{counts[ids[0]][0] + counts[ids[1]][0]:,} rows") in done
    assert [LocalStorage(store).exists(_uri(db, j)) for j in ids] == [False, False, True]
    assert rows(db, ids[0]) == rows(db, ids[1]) == [] and len(rows(db, ids[2])) == counts[ids[2]][0]

    code, again = clientes_ingest(capsys, "purge", *common)
    assert code == 0 and "nothing to do" in again, again
    # The claim went with the rows: the same file loads again as a new job (a run, as the CLI does it).
    assert load_file(db, paths[0], store).job_id == ids[-1] + 1
    assert rows(db, ids[-1] + 1) and len(rows(db, ids[-1] + 1)) == counts[ids[0]][0]


def _uri(db: Database, job_id: int) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(sa.select(ingest_jobs.c.source_uri).where(ingest_jobs.c.id == job_id)).scalar_one())
