"""Slow and hostile clients against the API served by a real uvicorn on 127.0.0.1, over raw sockets: idle
uploads time out (408), waiting uploads are bounded (503 + Retry-After), the token is checked before a
body is read, and a chunked JSON body is cut at its cap, all without waiting for the client's bytes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from support.api import AUTH, RecordingLauncher, multipart

from deployments.api import ApiConfig, create_app

BOUNDARY = "slow-boundary"
LINE = b"Ana|Paz|12345678|Activo|1/2/2020|true|false\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(api_env: dict[str, Any]) -> Iterator[Any]:
    """``serve(config)``: the app on a real uvicorn in a thread; returns its base URL and port."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(config: ApiConfig) -> dict[str, Any]:
        launcher = RecordingLauncher()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(config=config, launcher=launcher), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="uvicorn-slow-clients", daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return {"url": f"http://127.0.0.1:{port}", "port": port, "launcher": launcher}

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(15)


class SlowClient:
    """A raw HTTP/1.1 client that sends the head of a request and then only what it is told to."""

    def __init__(self, port: int, path: str, headers: dict[str, str], first: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(head.encode() + b"\r\n" + first)

    def response(self, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body received within ``timeout`` seconds (TimeoutError otherwise)."""
        self.sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = self.sock.recv(65536)
            if not piece:
                break
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            piece = self.sock.recv(65536)
            if not piece:
                break
            body += piece
        return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.sock.close()


def upload_head(length: int = 50 * 1024**2) -> tuple[dict[str, str], bytes]:
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(length)}
    first = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.dat\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n").encode() + LINE * 10
    return headers, first


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_an_idle_upload_times_out_with_408_and_leaves_nothing(serve: Any, api_env: dict[str, Any]) -> None:
    api = serve(ApiConfig(body_idle_timeout=1.0))
    headers, first = upload_head()
    client = SlowClient(api["port"], "/process", headers, first)
    started = time.monotonic()
    try:
        status, response_headers, body = client.response(timeout=15)  # a real wait: no 408 would hang here
    finally:
        client.close()
    assert status == 408, body
    assert 0.9 <= time.monotonic() - started < 10
    assert response_headers.get("connection") == "close"
    assert b"no request body data for 1 s" in body
    assert stored_files(api_env["root"]) == [] and api["launcher"].calls == []
    with httpx.Client(timeout=30) as http:  # the slot is free again
        assert http.post(f"{api['url']}/process", files=multipart("a.dat", LINE), headers=AUTH).status_code == 202
        assert http.get(f"{api['url']}/health").json()["uploadsInProgress"] == 0


def test_a_trickling_upload_is_not_idle(serve: Any) -> None:
    api = serve(ApiConfig(body_idle_timeout=1.0))
    payload = LINE * 6
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.dat\"\r\n\r\n").encode() \
        + payload + f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body))}
    client = SlowClient(api["port"], "/process", headers)
    try:
        for start in range(0, len(body), 40):  # 2.5 s in all, never 1 s without a byte
            client.sock.sendall(body[start:start + 40])
            time.sleep(0.25)
        status, _, answer = client.response(timeout=30)
    finally:
        client.close()
    assert status == 202, answer


def test_waiting_uploads_are_bounded_with_503_and_retry_after(serve: Any) -> None:
    api = serve(ApiConfig(max_concurrent_uploads=1, max_queued_uploads=1, body_idle_timeout=60))
    headers, first = upload_head()
    slow = [SlowClient(api["port"], "/process", headers, first)]  # holds the one upload slot
    with httpx.Client(timeout=10) as http:
        deadline = time.monotonic() + 10
        while http.get(f"{api['url']}/health").json()["uploadsInProgress"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        slow.append(SlowClient(api["port"], "/process", headers, first))  # waits for the slot
        while http.get(f"{api['url']}/health").json()["uploadsInProgress"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        try:
            started = time.monotonic()
            refused = http.post(f"{api['url']}/process", files=multipart("a.dat", LINE), headers=AUTH)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "10" and time.monotonic() - started < 5
            assert refused.json()["error"] == "too many uploads in progress (2)"
            # Everyone else is still served while the slow clients hold their places.
            assert http.get(f"{api['url']}/health").status_code == 200
            assert http.get(f"{api['url']}/jobs/1", headers=AUTH).status_code == 404
            assert http.post(f"{api['url']}/runs", json={"source": "s3://elsewhere/x.dat"},
                             headers=AUTH).status_code == 422
        finally:
            for client in slow:
                client.close()
        deadline = time.monotonic() + 20
        while http.get(f"{api['url']}/health").json()["uploadsInProgress"]:
            assert time.monotonic() < deadline, "the closed uploads still hold their places"
            time.sleep(0.05)
        accepted = http.post(f"{api['url']}/process", files=multipart("a.dat", LINE), headers=AUTH)
        assert accepted.status_code == 202, accepted.text


def test_an_unauthenticated_upload_is_answered_before_its_body_arrives(serve: Any) -> None:
    api = serve(ApiConfig())
    headers, first = upload_head(length=200 * 1024**2)
    headers["Authorization"] = "Bearer wrong"
    client = SlowClient(api["port"], "/process", headers, first)  # 200 MiB announced, 600 bytes sent
    try:
        status, _, body = client.response(timeout=10)
    finally:
        client.close()
    assert status == 401, body
    runs = SlowClient(api["port"], "/runs", {"Content-Type": "application/json", "Content-Length": str(200 * 1024**2)},
                      b'{"source": "')
    try:
        assert runs.response(timeout=10)[0] == 401
    finally:
        runs.close()


def test_a_chunked_json_body_is_cut_at_its_cap(serve: Any) -> None:
    api = serve(ApiConfig(max_json_bytes=1024, body_idle_timeout=60))
    headers = {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    piece = b"a" * 2000
    chunks = b'c\r\n{"source": "\r\n' + b"%x\r\n" % len(piece) + piece + b"\r\n"
    client = SlowClient(api["port"], "/runs", headers, chunks)
    try:
        status, _, body = client.response(timeout=10)  # the body never ends: only the cap can answer
    finally:
        client.close()
    assert status == 413 and b"JSON body larger than the limit of 1024 bytes" in body


def test_an_idle_json_body_times_out(serve: Any) -> None:
    api = serve(ApiConfig(body_idle_timeout=1.0))
    client = SlowClient(api["port"], "/runs", {**AUTH, "Content-Type": "application/json", "Content-Length": "100"},
                        b'{"source": ')
    try:
        status, _, body = client.response(timeout=15)
    finally:
        client.close()
    assert status == 408, body


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTES_API_MAX_QUEUED_UPLOADS", "0")
    monkeypatch.setenv("CLIENTES_API_BODY_IDLE_TIMEOUT", "2.5")
    config = ApiConfig()
    assert (config.max_queued_uploads, config.body_idle_timeout) == (0, 2.5)
    assert ApiConfig.model_fields["max_queued_uploads"].default == 8
    assert ApiConfig.model_fields["body_idle_timeout"].default == 30.0
