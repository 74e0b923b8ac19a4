"""Fixtures of the end-to-end system test: ``clientes-ingest dev`` started as a real child process (moto,
Prefect server + UI, process worker, trigger, API) on a private PostgreSQL database, and helpers to
talk to it.

The stack runs for the whole module and is stopped with SIGTERM, like Ctrl-C, by the last test (or by
the fixture's teardown when that test did not run). Requires: PostgreSQL on 127.0.0.1:5432 (trust auth),
free local ports, and the ``dev`` extra; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
import sqlalchemy as sa

from clientes_ingest.devtools.devstack import FAKE_AWS_KEY, log_tail

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 300.0  # a Prefect server takes ~25 s to start on an idle 2-CPU machine; CI may be busier


@dataclass
class RunningStack:
    """The dev stack as its command describes it in ``stack.json``, with the process that runs it."""

    process: subprocess.Popen[bytes]
    output: Path
    state_dir: Path
    db_url: str
    info: dict[str, Any]
    children_before: set[int]
    stopped: bool = False
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def prefect_url(self) -> str:
        return str(self.info["prefect_url"])

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    @property
    def token(self) -> str:
        return str(self.info["api_token"])

    @property
    def bucket(self) -> str:
        return str(self.info["bucket"])

    def s3(self) -> Any:
        return boto3.session.Session(aws_access_key_id=FAKE_AWS_KEY, aws_secret_access_key=FAKE_AWS_KEY,
                                     region_name="us-east-1").client("s3", endpoint_url=self.info["moto_url"])

    def prefect_client(self) -> Any:
        """A client of the stack's Prefect API, whatever Prefect settings this test process has."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.info["prefect_api_url"], auth_string=self.info["prefect_auth_string"])

    def cli_env(self) -> dict[str, str]:
        """Env of a ``prefect`` CLI command against the stack (no other Prefect profile or API)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_API_URL=self.info["prefect_api_url"], PREFECT_HOME=str(self.state_dir / "cli-home"),
                   PREFECT_API_AUTH_STRING=self.info["prefect_auth_string"],
                   PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   # Rich sizes tables to the terminal; without one (CI) it folds names into "local-proc…".
                   COLUMNS="200")
        return env

    def prefect_cli(self, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run([sys.executable, "-m", "prefect", *args], capture_output=True, text=True,
                              env=self.cli_env(), cwd=REPO, timeout=timeout, check=False)
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def diagnostics(self) -> str:
        """The tail of every service log, for assertion messages."""
        logs = sorted(Path(self.info.get("log_dir", self.state_dir / "logs")).glob("*.log"))
        return "\n".join(f"--- {p.name}\n{log_tail(p, 25)}" for p in logs)

    def descendants(self) -> list[psutil.Process]:
        """Live processes under the command (services and their flow runs); remembered for the final check."""
        try:
            found = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        for proc in found:
            self.seen.setdefault(proc.pid, proc)
        return found

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM the command (what Ctrl-C/`kill` does) and wait for it; kill everything if it hangs."""
        self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for proc in [*self.seen.values(), psutil.Process(self.process.pid)]:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            code = self.process.wait(timeout=10)
        self.stopped = True
        return code


def private_database(admin_url: str) -> str:
    name = f"clientes_e2e_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    from clientes_ingest.db import Database

    Database(url).dispose()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="module")
def new_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """Call it for a fresh empty PostgreSQL database; all are dropped after the module."""
    created: list[str] = []

    def create() -> str:
        created.append(private_database(pg_admin_url))
        return created[-1]

    yield create
    for url in created:
        drop_database(pg_admin_url, url)


def _wait_ready(process: subprocess.Popen[bytes], state_file: Path, output: Path) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if state_file.exists():
            info: dict[str, Any] = json.loads(state_file.read_text())
            if info.get("status") == "ready":
                return info
        if process.poll() is not None:
            pytest.fail(f"clientes-ingest dev exited with {process.returncode}:\n{output.read_text()}")
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=90)
    pytest.fail(f"clientes-ingest dev was not ready within {STARTUP_TIMEOUT:.0f}s:\n{output.read_text()}")


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory: pytest.TempPathFactory, new_database: Callable[[], str]) -> Iterator[RunningStack]:
    """``clientes-ingest dev`` on free ports and a private PostgreSQL database, small chunks, fast polling."""
    state_dir = tmp_path_factory.mktemp("devstack")
    db_url = new_database()
    output = state_dir / "command.out"
    env = {**os.environ, "CLIENTES_CHUNK_SIZE": "64KiB", "CLIENTES_BLOCK_SIZE": "16KiB",
           "CLIENTES_RETRY_BACKOFF_SECONDS": "0", "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("CLIENTES_API_TOKEN", None)  # the stack generates one
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clientes_ingest.cli", "dev", "--state-dir", str(state_dir), "--db", db_url,
             "--prefect-port", "0", "--api-port", "0", "--trigger-port", "0", "--moto-port", "0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    stack = RunningStack(process, output, state_dir, db_url, {}, children_before)
    try:
        stack.info = _wait_ready(process, state_dir / "stack.json", output)
        yield stack
    finally:
        if not stack.stopped:
            stack.terminate()
