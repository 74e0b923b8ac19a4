"""Helpers of the operations tests: a Prefect server handle, an HTTP sink, a child Python runner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    log: Path
    applied_at: float = 0.0  # time.monotonic() when the automations were applied

    def env(self, **extra: str) -> dict[str, str]:
        """A child's environment pointed at this server and nothing else of the caller's Prefect."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLIENTES_"))}
        env.update(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(self.home / "client"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", CLIENTES_RETRY_BACKOFF_SECONDS="0",
                   CLIENTES_DB_WRITE_LIMIT="", PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events named ``name`` the server has stored (newest first)."""
        body = {"filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
        with self.client() as client:
            response = client.post("/events/filter", json=body)
        response.raise_for_status()
        return list(response.json()["events"])

    def wait_events(self, name: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(1)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class HttpSink:
    """A tiny HTTP server on 127.0.0.1 that records every request it receives."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, subject_part: str, timeout: float) -> dict[str, Any] | None:
        """The first notification whose subject contains ``subject_part``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                for item in self.received:
                    if subject_part in str(item["json"].get("subject", "")):
                        return item
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(item["json"].get("subject")) for item in self.received]


def run_python(
    server: PrefectServer, code: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python (cwd: the repo) against ``server``."""
    return subprocess.run([sys.executable, "-c", code], env=server.env(**env), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)
