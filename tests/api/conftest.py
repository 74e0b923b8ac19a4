"""Fixtures of the webhook API tests: the environment (SQLite, local storage, the test token, small
chunks), a recording launcher and a TestClient of the app built on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.api import TOKEN, RecordingLauncher

from clientes_ingest.db import Database
from deployments.api import create_app


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Environment shared by the API and in-process flow runs: SQLite, local storage, small chunks."""
    env = {
        "CLIENTES_DB_URL": f"sqlite:///{tmp_path / 'api.db'}",
        "CLIENTES_STORAGE": "local",
        "CLIENTES_STORAGE_ROOT": str(tmp_path / "store"),
        "CLIENTES_API_TOKEN": TOKEN,
        "CLIENTES_CHUNK_SIZE": "40KiB",
        "CLIENTES_BLOCK_SIZE": "16KiB",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**env, "root": tmp_path / "store", "db": Database(env["CLIENTES_DB_URL"])}


@pytest.fixture
def recorder() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def client(api_env: dict[str, Any], recorder: RecordingLauncher) -> Iterator[TestClient]:
    with TestClient(create_app(launcher=recorder)) as test_client:
        yield test_client
