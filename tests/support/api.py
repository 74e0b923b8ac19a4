"""Helpers shared by the webhook API tests: the test token, a launcher that records instead of running,
multipart form fields and waiting for ``/ready`` after the app's start-up work."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.testclient import TestClient

from deployments.launch import LaunchResult

TOKEN = "api-token-7d1f0c5e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RecordingLauncher:
    """Remembers launches instead of running them (for tests about the API, not the flow)."""

    mode = "in-process"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.keys: dict[str, LaunchResult] = {}

    def launch(self, source: str, *, job_id: int | None, idempotency_key: str | None,
               chunk_size: str | None = None, pin: dict[str, str] | None = None) -> LaunchResult:
        self.calls.append({"source": source, "job_id": job_id, "key": idempotency_key, "chunk_size": chunk_size,
                           "pin": pin})
        result = LaunchResult(str(uuid.uuid4()), True, "in-process", job_id)
        if idempotency_key:
            self.keys[idempotency_key] = result
        return result

    def find(self, idempotency_key: str) -> LaunchResult | None:
        found = self.keys.get(idempotency_key)
        return None if found is None else LaunchResult(found.flow_run_id, False, found.mode, found.job_id)


def multipart(filename: str, data: bytes) -> dict[str, Any]:
    return {"file": (filename, data, "application/octet-stream")}


def wait_ready(client: TestClient, timeout: float = 10) -> Any:
    """GET /ready once the start-up work (in the background) is over."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/ready")
        if response.json().get("detail", {}).get("runs") != "starting" or time.monotonic() > deadline:
            return response
        time.sleep(0.05)
