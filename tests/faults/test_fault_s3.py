"""Fault 7: S3 becomes unavailable while chunks are being read. A TCP proxy sits between the pipeline
and the moto server: a short cut is ridden out by the retries (botocore's, the ranged reader's, the
chunk task's) and the run completes exactly once; a lasting refusal (403 AccessDenied on every
request) fails the job with a clear error and no partial chunk, and after recovery a rerun loads only
the missing chunks. Real child processes, the moto server, the real PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from faultkit import (
    Child,
    Reference,
    TcpProxy,
    children,
    chunk_attempts,
    chunk_states,
    cli_args,
    http_error,
    jobs_table,
    query,
    wait_until,
)
from support.aws import FAKE_KEY_ID, FAKE_SECRET, REGION
from support.loading import rejects, rows

from clientes_ingest.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.system]

KEY = "incoming/CLIENTES_IN_0425.dat"


@pytest.fixture
def s3_source(reference: Reference, aws_s3_client: Any, aws_bucket: str) -> str:
    aws_s3_client.upload_file(str(reference.path), aws_bucket, KEY)
    return f"s3://{aws_bucket}/{KEY}"


def s3_env(child_env: dict[str, str], endpoint: str, bucket: str, tmp_path: Path) -> dict[str, str]:
    return {
        **child_env,
        "CLIENTES_STORAGE": "s3",
        "CLIENTES_S3_BUCKET": bucket,
        "CLIENTES_AWS_ENDPOINT_URL": endpoint,
        "CLIENTES_AWS_REGION": REGION,
        "CLIENTES_AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "CLIENTES_AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def moto_address(moto_endpoint: str) -> tuple[str, int]:
    parsed = urlparse(moto_endpoint)
    assert parsed.hostname and parsed.port
    return parsed.hostname, parsed.port


@pytest.mark.timeout(180)
def test_short_s3_outage_during_chunk_reads_is_retried_to_exactly_once(
    reference: Reference, s3_source: str, aws_bucket: str, moto_endpoint: str, new_pg: Callable[[], str],
    child_env: dict[str, str], tmp_path: Path,
) -> None:
    url = new_pg()
    with TcpProxy(moto_address(moto_endpoint)) as proxy, children() as started:
        env = s3_env(child_env, f"http://{proxy.address}", aws_bucket, tmp_path)
        run = Child(cli_args("run", s3_source, "--db", url, "--quiet"), env, tmp_path, "run")
        started.append(run)
        wait_until(lambda: chunk_states(url).get("done", 0) >= 2, timeout=120, what="two committed chunks", child=run)
        states = chunk_states(url)
        assert states.get("pending", 0) + states.get("running", 0) > 0  # the cut lands while reads remain
        connections = proxy.accepted
        proxy.cut()
        time.sleep(2.0)
        proxy.restore()
        assert run.wait(timeout=150) == 0, run.output()
        assert proxy.accepted > connections  # the reads reconnected after the outage
        # A read really failed during the cut and was retried (logged by clientes_ingest.s3 for every
        # failed request botocore retries, and every dropped ranged read the reader retries).
        retried = [line for line in (run.stdout() + run.stderr()).splitlines()
                   if "botocore retries it" in line or "; retrying (" in line]
        assert retried, run.output()
        assert any("GetObject" in line or "S3 read of" in line for line in retried), retried

    ((_, status, loaded, rejected, error),) = jobs_table(url)
    assert (status, loaded, rejected, error) == ("completed_with_rejects", len(reference.rows),
                                                 len(reference.rejects), None)
    db = Database(url)
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects


@pytest.mark.timeout(180)
def test_s3_refusing_reads_fails_the_job_clearly_and_a_rerun_loads_only_missing_chunks(
    reference: Reference, s3_source: str, aws_bucket: str, moto_endpoint: str, new_pg: Callable[[], str],
    child_env: dict[str, str], tmp_path: Path,
) -> None:
    url = new_pg()
    with TcpProxy(moto_address(moto_endpoint)) as proxy, children() as started:
        env = s3_env(child_env, f"http://{proxy.address}", aws_bucket, tmp_path)
        first = Child(cli_args("run", s3_source, "--db", url, "--quiet"), env, tmp_path, "first")
        started.append(first)
        wait_until(lambda: chunk_states(url).get("done", 0) >= 2, timeout=120, what="two committed chunks", child=first)
        proxy.respond(http_error(403, "AccessDenied", "Access Denied"))  # not retried by botocore
        assert first.wait(timeout=150) == 1, first.output()
        ((job_id, status, _, _, error),) = jobs_table(url)
        chunks = chunk_attempts(url, job_id)
        failed = sum(1 for state, _ in chunks.values() if state != "done")
        assert status == "failed" and failed > 0
        assert error.startswith(f"{failed} of {len(chunks)} chunks not loaded; first error: StorageError: "
                                f"cannot read {s3_source} bytes ")
        assert "AccessDenied" in error
        assert f"error: job {job_id} failed: {failed} of {len(chunks)} chunks not loaded" in first.stderr()
        # A chunk that failed was tried 1 + 3 times, and left nothing behind.
        assert {attempts for state, attempts in chunks.values() if state == "failed"} == {4}
        done = query(url, "SELECT first_line, line_count FROM ingest_chunks WHERE job_id = :j AND status = 'done'",
                     j=job_id)
        db = Database(url)
        assert rows(db) == sorted(r for f, n in done for r in reference.rows_between(f, f + n - 1))
        assert rejects(db) == sorted(r for f, n in done for r in reference.rejects_between(f, f + n - 1))

        proxy.restore()
        second = Child(cli_args("run", s3_source, "--db", url, "--quiet"), env, tmp_path, "second")
        started.append(second)
        assert second.wait(timeout=150) == 0, second.output()

    after = chunk_attempts(url, job_id)
    for chunk_no, (state, attempts) in chunks.items():
        assert after[chunk_no] == ("done", attempts if state == "done" else attempts + 1), chunk_no
    assert rows(db) == reference.rows
    assert rejects(db) == reference.rejects
    assert jobs_table(url)[0][1] == "completed_with_rejects"
