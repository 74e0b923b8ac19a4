"""The webhook API through FastAPI's TestClient: auth, limits, errors, uploads, jobs, rejects, probes.

Runs that are not the point of a test go to a recording launcher (dependency injection); the tests that
check what an upload loads run the real flow in-process under the Prefect test harness. SQLite DB and
local storage under tmp_path; S3 through the session's moto server.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.api import AUTH, TOKEN, RecordingLauncher, multipart, wait_ready
from support.loading import load_file, rejects, rows

from clientes_ingest import job_queries, jobs
from clientes_ingest.chunks import plan_chunks
from clientes_ingest.db import Database
from clientes_ingest.devtools.generator import generate
from clientes_ingest.storage import LocalStorage
from deployments.api import ApiConfig, create_app
from deployments.launch import InProcessLauncher
from flows.ingest import IngestFailed


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def clients_file(tmp_path: Path, lines: int = 2000, seed: int = 5) -> Path:
    path = tmp_path / "CLIENTES_IN_0425.dat"
    generate(path, lines=lines, seed=seed)
    return path


# ------------------------------------------------------------------------------------------- auth


def test_mutating_endpoints_reject_a_missing_or_wrong_token(client: TestClient, recorder: RecordingLauncher) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        upload = client.post("/process", files=multipart("a.dat", b"x\n"), headers=headers)
        run = client.post("/runs", json={"source": "s3://clientes-ingest/incoming/a.dat"}, headers=headers)
        for response in (upload, run):
            assert response.status_code == 401, headers
            assert response.json()["error"] == "missing or invalid bearer token"
            assert response.headers["www-authenticate"] == "Bearer"
    assert recorder.calls == []
    assert client.post("/process", files=multipart("a.dat", b"x\n"), headers=AUTH).status_code == 202


def test_without_a_configured_token_mutating_endpoints_answer_503(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, recorder: RecordingLauncher
) -> None:
    monkeypatch.delenv("CLIENTES_API_TOKEN")
    with TestClient(create_app(launcher=recorder)) as client:
        for headers in ({}, AUTH, {"Authorization": "Bearer "}):
            response = client.post("/process", files=multipart("a.dat", b"x\n"), headers=headers)
            assert response.status_code == 503
            assert response.json() == {"error": "the API token is not configured",
                                       "detail": "set CLIENTES_API_TOKEN on the API to enable this endpoint"}
            assert client.post("/runs", json={"source": "s3://b/k"}, headers=headers).status_code == 503
        assert client.get("/health").status_code == 200
    assert recorder.calls == [] and stored_files(api_env["root"]) == []


# -------------------------------------------------------------------------------- limits and types


def test_a_body_that_is_not_multipart_is_415(client: TestClient) -> None:
    for kwargs in ({"json": {"file": "x"}}, {"content": b"a|b\n", "headers": {"Content-Type": "text/plain"}},
                   {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}}):  # no boundary
        headers = {**AUTH, **kwargs.pop("headers", {})}
        response = client.post("/process", headers=headers, **kwargs)
        assert response.status_code == 415
        assert response.json()["error"] == "expected a multipart/form-data upload"


def test_content_length_over_the_limit_is_413_before_anything_is_stored(
    api_env: dict[str, Any], recorder: RecordingLauncher
) -> None:
    pulled: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(10):
            pulled.append(1)
            yield b"x" * 100_000

    with TestClient(create_app(config=ApiConfig(max_upload_bytes=200_000), launcher=recorder)) as client:
        headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=b", "Content-Length": "1000000"}
        response = client.post("/process", content=body(), headers=headers)
        assert response.status_code == 413
        assert response.json()["error"] == "upload larger than the limit of 200000 bytes"
        assert client.get("/jobs/1", headers=AUTH).status_code == 404
    assert len(pulled) <= 1  # the app never asked for the body (the test client may prime one piece)
    assert stored_files(api_env["root"]) == [] and recorder.calls == []


def test_a_streamed_upload_over_the_limit_is_413_and_its_partial_file_is_deleted(
    api_env: dict[str, Any], recorder: RecordingLauncher
) -> None:
    boundary = "limit-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.dat\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()

    def body() -> Iterator[bytes]:  # no Content-Length: sent chunked, the limit must hold while streaming
        yield head
        for _ in range(40):
            yield b"Ana|Paz|12345678|Activo|1/2/2020|true|false\n" * 1000
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(config=ApiConfig(max_upload_bytes=500_000), launcher=recorder)) as client:
        response = client.post("/process", content=body(),
                               headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 413
        assert client.get("/jobs/1", headers=AUTH).status_code == 404
        metrics = client.get("/metrics").text
    assert stored_files(api_env["root"]) == []  # the temporary file of the partial upload is gone
    assert recorder.calls == []
    assert 'clientes_api_errors_total{endpoint="/process",status="413"} 1.0' in metrics


def test_malformed_uploads_get_clear_4xx(client: TestClient, api_env: dict[str, Any]) -> None:
    no_file = client.post("/process", data={"other": "x"}, files={"notfile": ("a.dat", b"x\n")}, headers=AUTH)
    assert no_file.status_code == 422 and no_file.json()["error"] == "no file in the upload"
    truncated = client.post("/process", content=b'--b\r\nContent-Disposition: form-data; name="file"; '
                            b'filename="a.dat"\r\n\r\nAna|Paz\n', headers={**AUTH, "Content-Type": "multipart/"
                                                                            "form-data; boundary=b"})
    assert truncated.status_code == 400 and "ended early" in truncated.json()["error"]
    empty = client.post("/process", files=multipart("a.dat", b""), headers=AUTH)
    assert empty.status_code == 422 and empty.json()["error"] == "a.dat is empty"
    braces = client.post("/process", files=multipart("CLIENTES_IN_{MMYY}.dat", b"x\n"), headers=AUTH)
    assert braces.status_code == 422 and "invalid file name" in braces.json()["error"]


# ------------------------------------------------------------------------------------ path traversal


@pytest.mark.parametrize("name", ["../../evil.dat", "/etc/cron.d/evil.dat", "..\\..\\evil.dat",
                                  "incoming/../../../evil.dat"])
def test_a_filename_with_a_path_never_escapes_local_storage(
    client: TestClient, api_env: dict[str, Any], recorder: RecordingLauncher, tmp_path: Path, name: str
) -> None:
    response = client.post("/process", files=multipart(name, b"Ana|Paz|12345678|Activo|1/2/2020|true|false\n"),
                           headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["fileName"] == "evil.dat"
    (stored,) = stored_files(api_env["root"])
    assert stored.name == "evil.dat" and stored.resolve().is_relative_to(api_env["root"].resolve())
    assert recorder.calls[0]["source"] == stored.resolve().as_uri()
    assert not any(p.name == "evil.dat" for p in tmp_path.rglob("*") if p != stored)


@pytest.mark.parametrize("name", ["..", "../", "/", "."])
def test_a_filename_that_is_only_a_path_is_refused(client: TestClient, api_env: dict[str, Any], name: str) -> None:
    response = client.post("/process", files=multipart(name, b"x\n"), headers=AUTH)
    assert response.status_code == 422 and "invalid file name" in response.json()["error"]
    assert stored_files(api_env["root"]) == []


def test_a_filename_with_a_path_never_escapes_the_s3_prefix(
    api_env: dict[str, Any], aws_bucket: str, aws_s3_client: Any, monkeypatch: pytest.MonkeyPatch,
    recorder: RecordingLauncher
) -> None:
    monkeypatch.setenv("CLIENTES_STORAGE", "s3")
    monkeypatch.setenv("CLIENTES_S3_UPLOAD_PREFIX", "uploads/")
    with TestClient(create_app(launcher=recorder)) as client:
        for name in ("../../evil.dat", "/abs/evil2.dat", "uploads/../../evil3.dat"):
            response = client.post("/process", files=multipart(name, b"Ana|Paz|1|Activo|1/2/2020|true|false\n"),
                                   headers=AUTH)
            assert response.status_code == 202, response.text
    keys = [o["Key"] for o in aws_s3_client.list_objects_v2(Bucket=aws_bucket)["Contents"]]
    # Each upload has a folder of its own under the prefix, and keeps only its base name.
    assert sorted(re.sub(r"^uploads/[^/]+/", "uploads/*/", k) for k in keys) == [
        "uploads/*/evil.dat", "uploads/*/evil2.dat", "uploads/*/evil3.dat"]
    assert sorted(c["source"] for c in recorder.calls) == sorted(f"s3://{aws_bucket}/{k}" for k in keys)


# ------------------------------------------------------------------------------------------- jobs


def test_unknown_jobs_are_404_and_bad_ids_422(client: TestClient) -> None:
    for path in ("/jobs/999", "/jobs/999/rejects", "/jobs/999/rejects?format=csv"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"] == "job 999 does not exist"
    bad = client.get("/jobs/abc", headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid request"
    assert bad.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_rejects_come_in_pages_and_as_a_streamed_csv(client: TestClient, api_env: dict[str, Any],
                                                     tmp_path: Path) -> None:
    db = api_env["db"]
    registration = load_file(db, clients_file(tmp_path, lines=3000), tmp_path / "direct")
    job_id = registration.job_id
    expected = rejects(db, job_id)
    assert len(expected) > 300

    got: list[tuple[Any, ...]] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get(f"/jobs/{job_id}/rejects", params={"offset": offset, "limit": 250}, headers=AUTH).json()
        assert page["total"] == len(expected) and len(page["items"]) <= 250
        got += [(i["lineNumber"], i["reason"], i["rawLine"], i["rawLength"]) for i in page["items"]]
        offset = page["nextOffset"]
    assert got == expected

    reason = expected[0][1]
    only = client.get(f"/jobs/{job_id}/rejects", params={"reason": reason, "limit": 1000}, headers=AUTH).json()
    assert only["total"] == len(only["items"]) == sum(1 for r in expected if r[1] == reason)
    assert client.get(f"/jobs/{job_id}/rejects", params={"limit": 1001}, headers=AUTH).status_code == 422

    download = client.get(f"/jobs/{job_id}/rejects", params={"format": "csv"}, headers=AUTH)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == f'attachment; filename="job-{job_id}-rejects.csv"'
    table = list(csv.reader(io.StringIO(download.text)))
    assert table[0] == ["line_number", "reason", "raw_line", "raw_length"]
    assert [(int(a), b, c, int(d)) for a, b, c, d in table[1:]] == expected
    csv_page = client.get(f"/jobs/{job_id}/rejects?format=csv&reason={reason}", headers=AUTH)
    filtered = list(csv.reader(io.StringIO(csv_page.text)))
    assert len(filtered) - 1 == only["total"]

    job = client.get(f"/jobs/{job_id}", headers=AUTH).json()
    assert job["rowsRejected"] == len(expected) and job["rowsLoaded"] == len(rows(db, job_id))
    assert job["status"] == "completed_with_rejects" and len(job["chunks"]) == job["chunkCount"]
    assert all(c["status"] == "done" for c in job["chunks"])


@pytest.mark.usefixtures("prefect_harness")
def test_an_upload_is_registered_with_its_plan_and_its_run_is_pinned_to_it(
    client: TestClient, api_env: dict[str, Any], recorder: RecordingLauncher
) -> None:
    data = b"Ana|Paz|12345678|Activo|1/2/2020|true|false\n" * 3000
    response = client.post("/process", files=multipart("CLIENTES_IN_0525.dat", data), headers=AUTH)
    assert response.status_code == 202, response.text
    accepted = response.json()
    (call,) = recorder.calls
    stored = Path(call["source"].removeprefix("file://"))
    assert call["pin"] == {"sha256": hashlib.sha256(data).hexdigest(),
                           "etag": f"{len(data)}-{stored.stat().st_mtime_ns}"}
    source = jobs.job_source(api_env["db"].engine, accepted["jobId"])
    assert source is not None and source.staged is not None and source.sha256 == accepted["sha256"]
    assert len(source.staged.chunks) == accepted["chunksCreated"] > 1 and source.staged.total_lines == 3000
    assert job_queries.get_job(api_env["db"].engine, accepted["jobId"]).status == "pending"


def test_an_upload_loads_what_a_direct_run_loads(api_env: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = clients_file(tmp_path, lines=3000, seed=11)
    launcher = InProcessLauncher()
    scans: list[str] = []
    real_scan = LocalStorage.scan
    monkeypatch.setattr(LocalStorage, "scan", lambda self, uri, on_block=None: (
        scans.append(uri), real_scan(self, uri, on_block))[1])
    with TestClient(create_app(launcher=launcher)) as client:
        response = client.post("/process", files=multipart(path.name, path.read_bytes()), headers=AUTH)
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["totalLines"] == 3000 and accepted["chunkSize"] == 40 * 1024
        assert accepted["chunksCreated"] == len(plan_chunks([path.read_bytes()], 40 * 1024)) > 3
        launcher.wait(accepted["flowRunId"], timeout=120)
        job = client.get(f"/jobs/{accepted['jobId']}", headers=AUTH).json()

    reference_db = Database(f"sqlite:///{tmp_path / 'reference.db'}")
    reference = load_file(reference_db, path, tmp_path / "reference", chunk_size=40 * 1024)
    expected = reference_db_job(reference_db, reference.job_id)
    assert job["status"] == expected["status"] == "completed_with_rejects"
    for key in ("total_lines", "rows_loaded", "rows_rejected", "blank_lines", "rejects_by_reason", "sha256"):
        assert job[_camel(key)] == expected[key], key
    assert job["chunksDone"] == job["chunkCount"] == accepted["chunksCreated"]
    assert scans == []  # the run used the plan made while the upload was stored: no second read
    db = api_env["db"]
    assert rows(db, accepted["jobId"]) == rows(reference_db, reference.job_id)


def reference_db_job(db: Database, job_id: int) -> dict[str, Any]:
    from clientes_ingest.job_queries import get_job

    return get_job(db.engine, job_id).as_dict()


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.title() for p in rest)


def _upload_binary(client: TestClient, launcher: InProcessLauncher,
                   refused: bool = False) -> tuple[dict[str, Any], dict[str, Any], Any]:
    data = os.urandom(200_000) + b"\x00\xff\xfe" * 1000
    response = client.post("/process", files=multipart("blob.bin", data), headers=AUTH)
    assert response.status_code == 202
    if refused:  # the run fails (red in Prefect): wait re-raises its error
        with pytest.raises(IngestFailed, match="rejected_file"):
            launcher.wait(response.json()["flowRunId"], timeout=120)
    else:
        launcher.wait(response.json()["flowRunId"], timeout=120)
    job = client.get(f"/jobs/{response.json()['jobId']}", headers=AUTH).json()
    page = client.get(f"/jobs/{response.json()['jobId']}/rejects", params={"limit": 5}, headers=AUTH).json()
    return response.json(), job, page


@pytest.mark.usefixtures("prefect_harness")
def test_a_binary_upload_completes_with_every_line_rejected_when_the_guard_is_off(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIENTES_MAX_REJECT_RATIO", "1")  # the reject-ratio guard off: every line is judged
    launcher = InProcessLauncher()
    with TestClient(create_app(launcher=launcher)) as client:
        accepted, job, page = _upload_binary(client, launcher)
    assert job["status"] == "completed_with_rejects"
    assert job["rowsLoaded"] == 0
    assert job["rowsRejected"] + job["blankLines"] == job["totalLines"] == accepted["totalLines"] > 100
    assert page["items"] and all(isinstance(i["rawLine"], str) for i in page["items"])


@pytest.mark.usefixtures("prefect_harness")
def test_a_binary_upload_is_refused_as_a_rejected_file(api_env: dict[str, Any]) -> None:
    launcher = InProcessLauncher()
    with TestClient(create_app(launcher=launcher)) as client:
        _, job, _ = _upload_binary(client, launcher, refused=True)
    assert job["status"] == "rejected_file"
    assert job["rowsLoaded"] == 0
    assert "rejected_file" in job["error"]


# ----------------------------------------------------------------------------------------- probes


def test_ready_and_metrics_when_everything_answers(client: TestClient) -> None:
    ready = wait_ready(client).json()
    assert ready["status"] == "ready"
    assert ready["checks"] == {"database": "ok", "storage": "ok", "runs": "ok",
                               # "ok" once another test started the session's Prefect harness
                               "prefect": ready["checks"]["prefect"]}
    assert ready["checks"]["prefect"] in ("ok", "not configured")
    line = b"Ana|Paz|12345678|Activo|1/2/2020|true|false\n"
    client.post("/process", files=multipart("a.dat", line), headers=AUTH)
    client.post("/process", files=multipart("a.dat", b"x\n"))  # 401
    metrics = client.get("/metrics").text
    assert "clientes_api_uploads_total 1.0" in metrics
    assert f"clientes_api_upload_bytes_total {len(line)}.0" in metrics
    assert 'clientes_api_runs_started_total{endpoint="/process",mode="in-process"} 1.0' in metrics
    assert 'clientes_api_errors_total{endpoint="/process",status="401"} 1.0' in metrics
    assert client.get("/docs").status_code == 200
    assert "/process" in client.get("/openapi.json").json()["paths"]


def test_ready_is_503_while_runs_cannot_start(api_env: dict[str, Any]) -> None:
    class BrokenLauncher(RecordingLauncher):
        def prepare(self) -> None:
            raise RuntimeError("Prefect API at http://127.0.0.1:1/api unreachable")

    with TestClient(create_app(launcher=BrokenLauncher())) as client:
        body = wait_ready(client).json()
    assert body["error"] == "not ready: runs unreachable"
    assert body["detail"]["runs"] == "unreachable (see the API log)"  # the cause (a URL) is logged, not shown


# ---------------------------------------------------------------------------------------- secrets


def test_no_secret_appears_in_any_response_or_log_line(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = {"token": "tok-SECRET-4f9a2b", "db": "dbpass-SECRET-77c1", "aws": "aws-SECRET-key-0e3d"}
    monkeypatch.setenv("CLIENTES_API_TOKEN", secrets["token"])
    monkeypatch.setenv("CLIENTES_DB_URL", f"postgresql+psycopg://app:{secrets['db']}@127.0.0.1:1/clientes")
    monkeypatch.setenv("CLIENTES_AWS_SECRET_ACCESS_KEY", secrets["aws"])
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    with TestClient(create_app(launcher=RecordingLauncher()), raise_server_exceptions=False) as client:
        auth = {"Authorization": f"Bearer {secrets['token']}"}
        for response in (
            client.post("/process", files=multipart("a.dat", b"x|y\n"), headers=auth),  # DB down after storing
            client.post("/process", files=multipart("a.dat", b"x\n"), headers={"Authorization": "Bearer guess"}),
            client.post("/runs", json={"source": "s3://other-bucket/k.dat"}, headers=auth),
            client.get("/jobs/1", headers=auth), client.get("/jobs/1/rejects", headers=auth), client.get("/ready"),
            client.get("/metrics"),
            client.get("/openapi.json"),
        ):
            bodies.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    statuses = [int(b.split()[0]) for b in bodies]
    assert statuses[:6] == [503, 401, 422, 503, 503, 503]
    assert "database unavailable" in bodies[0] and "127.0.0.1:1" in bodies[0]
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for name, value in secrets.items():
        for body in bodies:
            assert value not in body, name
        assert value not in logs, name


# ------------------------------------------------------------------------------------------- main


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() configures process-wide logging: put it back afterwards."""
    factory = logging.getLogRecordFactory()
    names = ("clientes_ingest", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate, logging.getLogger(n).level)
             for n in names}
    yield
    logging.setLogRecordFactory(factory)
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_main_serves_on_the_configured_interface_and_masks_secrets_in_logs(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from deployments import api

    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append({"app": app, **kwargs}))
    monkeypatch.setenv("CLIENTES_API_HOST", "127.0.0.9")
    monkeypatch.setenv("CLIENTES_API_PORT", "9911")
    assert api.main([]) == 0
    assert api.main(["--host", "127.0.0.1", "--port", "8123"]) == 0
    assert [(s["host"], s["port"]) for s in served] == [("127.0.0.9", 9911), ("127.0.0.1", 8123)]
    assert served[0]["app"].title == "clientes-ingest API"
    record = logging.getLogger("some.library").makeRecord("some.library", logging.ERROR, __file__, 1,
                                                           "token %s leaked", (TOKEN,), None)
    assert record.getMessage() == "token *** leaked"
