"""System test: the real ``clientes-ingest-api`` process (uvicorn) on a free 127.0.0.1 port, the session's
Prefect harness as its API and in-process runs. A generated file is uploaded slowly with httpx streaming
while /health is probed; then GET /jobs/{id} is polled until the job is done and compared with a direct
run of the same file. Its log must not contain the token or other secrets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.loading import load_file

from clientes_ingest.db import Database
from clientes_ingest.devtools.generator import generate
from clientes_ingest.devtools.supervise import free_port
from clientes_ingest.job_queries import get_job
from clientes_ingest.jobs import DONE_STATUSES

pytestmark = [pytest.mark.system, pytest.mark.usefixtures("prefect_harness")]

TOKEN = "proc-token-SECRET-8e41"
AWS_SECRET = "aws-SECRET-proc-19ab"
BOUNDARY = "system-test-boundary"


def api_command() -> list[str]:
    script = Path(sys.executable).parent / "clientes-ingest-api"
    found = str(script) if script.exists() else shutil.which("clientes-ingest-api")
    assert found, "the clientes-ingest-api console script is not installed (pip install -e .)"
    return [found]


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIENTES_", "AWS_", "PREFECT_"))}
    env.update({
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "CLIENTES_LAUNCH_MODE": "in-process",  # the harness has no deployment or worker
        "CLIENTES_DB_URL": f"sqlite:///{tmp_path / 'system.db'}",
        "CLIENTES_STORAGE_ROOT": str(tmp_path / "store"),
        "CLIENTES_API_TOKEN": TOKEN,
        "CLIENTES_AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "CLIENTES_CHUNK_SIZE": "64KiB",
        "CLIENTES_BLOCK_SIZE": "16KiB",
        "CLIENTES_RETRY_BACKOFF_SECONDS": "0",
        "PYTHONUNBUFFERED": "1",
    })
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*api_command(), "--host", "127.0.0.1", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the API exited: {log_path.read_text()[-3000:]}"
            try:  # ready: the flow imported and the Prefect API reached (the start-up work)
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the API did not start: {log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        yield {"url": url, "log": log_path, "db": Database(env["CLIENTES_DB_URL"]), "process": process}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def slow_multipart(path: Path, piece: int, pause: float) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    with path.open("rb") as handle:
        while block := handle.read(piece):
            yield block
            time.sleep(pause)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def probe_health(client: httpx.Client, url: str, timings: list[float]) -> dict[str, Any]:
    start = time.perf_counter()
    response = client.get(f"{url}/health")
    timings.append(time.perf_counter() - start)
    assert response.status_code == 200
    return dict(response.json())


STALL_S = 1.0


def assert_live(timings: list[float], during: str) -> None:
    """/health never stalled: a blocked event loop would hold a probe for as long as the upload or the ingest
    (seconds), while CPU contention on a busy shared machine delays single probes by tenths of a second, so
    only a probe held a second or more fails (the number of probes answered during the upload is checked by
    the caller)."""
    stalls = [round(t, 3) for t in timings if t >= STALL_S]
    assert stalls == [], f"/health stalled {len(stalls)}/{len(timings)} times during the {during}: {stalls} s"


def test_the_api_process_ingests_a_slow_upload_and_stays_live(api_process: dict[str, Any], tmp_path: Path) -> None:
    url = api_process["url"]
    path = tmp_path / "CLIENTES_IN_0425.dat"
    stats = generate(path, lines=8000, seed=77)
    results: list[httpx.Response] = []

    def send() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        with httpx.Client(timeout=120) as client:
            results.append(client.post(f"{url}/process", content=slow_multipart(path, 12_000, 0.03),
                                       headers=headers))

    uploader = threading.Thread(target=send)
    upload_timings: list[float] = []
    during_upload = 0
    with httpx.Client(timeout=5) as client:
        client.get(f"{url}/health")  # connection opened before measuring
        uploader.start()
        while uploader.is_alive():
            during_upload += probe_health(client, url, upload_timings)["uploadsInProgress"] == 1
            time.sleep(0.05)
        uploader.join()
        assert results[0].status_code == 202, results[0].text
        accepted = results[0].json()
        assert accepted["totalLines"] == stats.lines == 8000 and accepted["mode"] == "in-process"

        ingest_timings: list[float] = []
        deadline = time.monotonic() + 120
        while True:
            job = client.get(f"{url}/jobs/{accepted['jobId']}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            if job["status"] in DONE_STATUSES or job["status"] == "failed":
                break
            assert time.monotonic() < deadline, f"job still {job['status']}"
            probe_health(client, url, ingest_timings)
            time.sleep(0.1)
        assert client.post(f"{url}/process", files={"file": ("a.dat", b"x\n")},
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(f"{url}/docs").status_code == 200
        metrics = client.get(f"{url}/metrics").text

    assert during_upload >= 10, "the upload was not in progress while /health was probed"
    assert_live(upload_timings, "upload")
    assert_live(ingest_timings, "ingest")

    reference_db = Database(f"sqlite:///{tmp_path / 'reference.db'}")
    reference = get_job(reference_db.engine, load_file(reference_db, path, tmp_path / "ref", chunk_size=64 * 1024)
                        .job_id)
    assert job["status"] == reference.status == "completed_with_rejects"
    assert (job["totalLines"], job["rowsLoaded"], job["rowsRejected"], job["blankLines"]) == (
        reference.total_lines, reference.rows_loaded, reference.rows_rejected, reference.blank_lines)
    assert job["rejectsByReason"] == reference.rejects_by_reason
    assert job["chunkCount"] == accepted["chunksCreated"] == reference.chunk_count > 5
    assert "clientes_api_uploads_total 1.0" in metrics

    api_process["process"].send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM).
    assert api_process["process"].wait(30) in (0, -signal.SIGTERM)
    log = api_process["log"].read_text()
    assert "Application shutdown complete" in log
    assert "POST /process" in log  # the access log is there...
    assert TOKEN not in log and AWS_SECRET not in log  # ...and no secret
