"""The `clientes-ingest` command: bad input and an unreachable database give one clear line and a
distinct exit code with nothing written; the README's commands work as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.garbage import random_bytes

from clientes_ingest.cli import main
from clientes_ingest.db import Database
from clientes_ingest.job_queries import get_job, list_jobs

SECRET = "s3cr3t-Pa55"


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 240
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CLIENTES_"))}
    full_env.update({"PREFECT_HOME": str(cwd / ".prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     **(env or {})})
    exe = Path(sys.executable).with_name("clientes-ingest")
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.dat", "no such file"),
    (lambda d: d, "it is a directory, not a file"),
    (lambda d: Path("/dev/null"), "not a regular file"),
])
def test_bad_input_is_a_clear_error_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db_file = tmp_path / "out" / "clientes.db"
    code = main(["run", str(make(tmp_path)), "--db", f"sqlite:///{db_file}", "--storage-root", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: cannot read ") and message in err and err.count("\n") == 1
    assert not db_file.exists() and not (tmp_path / "st").exists()


def test_an_unreachable_database_names_it_without_the_password(
    sample_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(sample_file), "--db", f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/clientes",
                 "--storage-root", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert code == 3
    assert "database postgresql+psycopg://app:***@127.0.0.1:1/clientes unreachable (connection refused" in err
    assert SECRET not in err and not (tmp_path / "st").exists()


def test_a_bad_chunk_size_is_a_usage_error(sample_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(sample_file), "--chunk-size", "lots"]) == 2
    assert "cannot read size 'lots'" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_an_empty_file_is_a_completed_job_with_no_rows(tmp_path: Path, sqlite_url: str) -> None:
    empty = tmp_path / "CLIENTES_IN_0101.dat"
    empty.write_bytes(b"")
    assert main(["run", str(empty), "--db", sqlite_url, "--storage-root", str(tmp_path / "st"), "--quiet"]) == 0
    (job,) = list_jobs(Database(sqlite_url).engine)
    summary = get_job(Database(sqlite_url).engine, job["id"])
    assert (summary.status, summary.rows_loaded, summary.total_lines, summary.chunk_count) == ("completed", 0, 0, 0)


@pytest.mark.usefixtures("prefect_harness")
def test_jobs_command_shows_counts_per_reason_and_chunk(
    sample_file: Path, tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(sample_file), "--db", sqlite_url, "--storage-root", str(tmp_path / "st"), "--quiet",
                 "--chunk-size", "100B"]) == 0
    capsys.readouterr()
    assert main(["jobs", "1", "--db", sqlite_url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["rejects_by_reason"] == {"fecha_ingreso": 1, "es_pep": 1, "field_count": 1}
    assert len(shown["chunks"]) == shown["chunk_count"] > 1
    assert sum(c["rows_loaded"] for c in shown["chunks"]) == shown["rows_loaded"] == 3
    assert main(["jobs", "--db", sqlite_url, "--rejects", "5"]) == 0
    assert "CLIENTES_IN_0425.dat" in capsys.readouterr().out
    assert main(["jobs", "7", "--db", sqlite_url]) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_run_refuses_a_garbage_file_with_exit_1(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = random_bytes(tmp_path / "CLIENTES_IN_0425.dat")
    args = ["run", str(garbage), "--db", sqlite_url, "--storage-root", str(tmp_path / "st"), "--quiet"]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "error: job 1 rejected_file: " in err and "non-blank lines rejected, above the limit of 50%" in err
    assert "top reasons: encoding" in err and "rejected_file" in out  # the summary table shows the status
    assert main(args) == 1  # the same bytes again: refused, never reported as loaded
    assert "job 1 refused this content" in capsys.readouterr().err
    assert get_job(Database(sqlite_url).engine, 1).rows_loaded == 0


@pytest.mark.slow
def test_readme_quickstart_generate_then_run_on_the_embedded_default(tmp_path: Path) -> None:
    """The README's first command, as real processes: ephemeral Prefect API, SQLite, local storage."""
    generated = run_cli(["generate", "data/CLIENTES_IN_0425.dat", "--lines", "20000", "--seed", "1"], tmp_path)
    assert generated.returncode == 0, generated.stderr
    ran = run_cli(["run", "data/CLIENTES_IN_0425.dat"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "completed_with_rejects" in ran.stdout and "Rejects by reason" in ran.stdout
    assert "global concurrency limit" not in ran.stderr  # the ephemeral API serves one process: no limit
    db = Database(f"sqlite:///{tmp_path / 'clientes.db'}")
    summary = get_job(db.engine, 1)
    assert summary.rows_loaded + summary.rows_rejected + summary.blank_lines == 20000
    assert (tmp_path / ".clientes-ingest" / "objects" / summary.sha256 / "CLIENTES_IN_0425.dat").is_file()
    again = run_cli(["run", "data/CLIENTES_IN_0425.dat"], tmp_path)
    assert again.returncode == 0 and "was already loaded by job 1" in again.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_run_works_the_same_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    generated = run_cli(["generate", "f/CLIENTES_IN_0425.dat", "--lines", "5000", "--seed", "2"], tmp_path)
    assert generated.returncode == 0, generated.stderr
    ran = run_cli(["run", "f/CLIENTES_IN_0425.dat", "--db", pg_url, "--chunk-size", "100KiB"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    summary = get_job(Database(pg_url).engine, 1)
    assert summary.status == "completed_with_rejects" and summary.chunk_count > 2
    assert summary.rows_loaded + summary.rows_rejected + summary.blank_lines == 5000
