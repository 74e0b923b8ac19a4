"""Secrets never leak: a run with a known database password, AWS secret key and API token (verbose logs,
S3 source on the moto server), and a run whose database is unreachable, are searched for those values
everywhere a user or operator can look: the command's output, every Prefect log, artifact and flow-run
parameter in the test API, the job tables, and the files the runs wrote.

The local PostgreSQL trusts 127.0.0.1, so the password in the URL is not checked by the server; it still
travels through every code path that handles the URL, which is what this test is about.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from faultkit import Child, Reference, children, cli_args, free_port, jobs_table
from prefect.client.orchestration import get_client
from support.aws import REGION

from clientes_ingest import cli

pytestmark = [pytest.mark.postgres, pytest.mark.system]


def with_password(url: str, password: str) -> str:
    return sa.engine.make_url(url).set(password=password).render_as_string(hide_password=False)


def everything_in_prefect() -> list[str]:
    """Every log message, artifact and flow-run parameter set the test API holds, as text."""
    texts: list[str] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while page := client.read_logs(limit=200, offset=offset):
            texts += [f"{log.name} {log.message}" for log in page]
            offset += len(page)
        offset = 0
        while page := client.read_artifacts(limit=200, offset=offset):
            texts += [f"{a.key} {a.description} {a.data}" for a in page]
            offset += len(page)
        offset = 0
        while page := client.read_flow_runs(limit=200, offset=offset):
            texts += [f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in page]
            offset += len(page)
    return texts


def database_text(url: str) -> str:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            parts = [str(row) for table in ("ingest_jobs", "ingest_chunks", "ingest_file_claims")
                     for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]  # noqa: S608 - fixed names
    finally:
        engine.dispose()
    return "\n".join(parts)


def files_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
                     and p.stat().st_size < 50_000_000)


@pytest.mark.timeout(180)
def test_no_secret_reaches_output_logs_artifacts_or_tables(
    reference: Reference, aws_s3_client: Any, aws_bucket: str, moto_endpoint: str, new_pg: Callable[[], str],
    child_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    token = uuid.uuid4().hex[:12]
    secrets = {"db password": f"pgPW-{token}", "aws secret": f"awsSK-{token}", "api token": f"apiTK-{token}"}
    url = with_password(new_pg(), secrets["db password"])
    key = "incoming/CLIENTES_IN_0425.dat"
    aws_s3_client.upload_file(str(reference.path), aws_bucket, key)
    env = {**child_env, "CLIENTES_AWS_ENDPOINT_URL": moto_endpoint, "CLIENTES_AWS_REGION": REGION,
           "CLIENTES_AWS_ACCESS_KEY_ID": f"AKIA{token.upper()}",
           "CLIENTES_AWS_SECRET_ACCESS_KEY": secrets["aws secret"],
           "CLIENTES_S3_BUCKET": aws_bucket, "CLIENTES_API_TOKEN": secrets["api token"], "CLIENTES_DB_URL": url,
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    unreachable = sa.engine.make_url(url).set(port=free_port()).render_as_string(hide_password=False)
    with children() as started:
        ok = Child(cli_args("run", f"s3://{aws_bucket}/{key}", "--db", url, "-v"), env, tmp_path / "out", "ok")
        started.append(ok)
        assert ok.wait(timeout=150) == 0, ok.output()
    # Stops before any flow runs, so in-process is the same code path as a child (and seconds faster).
    for name, value in env.items():
        if name.startswith("CLIENTES_"):
            monkeypatch.setenv(name, value)
    assert cli.main(["run", str(reference.path), "--db", unreachable]) == 3
    down = capsys.readouterr()
    assert "unreachable" in down.err and "***" in down.err  # named, with the password masked
    assert cli.main(["jobs", "1", "--db", url, "--json"]) == 0
    listed = capsys.readouterr()
    assert jobs_table(url)[0][1] == "completed_with_rejects"
    places = {
        "command output": "\n".join([ok.stdout(), ok.stderr(), down.out, down.err, listed.out, listed.err]),
        "prefect logs, artifacts, runs": "\n".join(everything_in_prefect()),
        "job tables": database_text(url),
        "files written": files_text(tmp_path),
    }
    assert "staged s3://" in places["prefect logs, artifacts, runs"]  # the search does see the run's logs
    for where, text in places.items():
        for what, value in secrets.items():
            assert value not in text, f"the {what} appears in the {where}"
