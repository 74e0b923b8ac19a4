"""How a run of ingest-clientes gets its task runner: chosen when the run starts (never at import), from
the settings of that moment, also for a run started from the deployment entrypoint as a worker does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.flows import load_flow_from_entrypoint
from prefect.task_runners import ThreadPoolTaskRunner

from clientes_ingest import resources
from clientes_ingest.devtools.generator import generate
from clientes_ingest.settings import Settings, use_settings
from clientes_ingest.storage import LocalStorage
from flows.ingest import RunnerFromSettings, build_task_runner, ingest_clientes

ROOT = Path(__file__).resolve().parents[2]


def max_workers(runner: object) -> int:
    assert isinstance(runner, ThreadPoolTaskRunner)
    return int(runner._max_workers)


def test_the_declared_runner_is_built_from_the_settings_when_a_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(ingest_clientes.task_runner, RunnerFromSettings)  # nothing built at import
    monkeypatch.setenv("CLIENTES_CHUNK_CONCURRENCY", "3")
    assert max_workers(ingest_clientes.task_runner.duplicate()) == 3
    monkeypatch.setenv("CLIENTES_CHUNK_CONCURRENCY", "1")
    assert max_workers(ingest_clientes.task_runner.duplicate()) == 1
    with use_settings(Settings(chunk_concurrency=5)):
        assert max_workers(ingest_clientes.task_runner.duplicate()) == 5
    assert max_workers(build_task_runner(Settings(chunk_concurrency=4))) == 4
    chosen = ingest_clientes.with_options(task_runner=build_task_runner(Settings(chunk_concurrency=6)))
    assert max_workers(chosen.task_runner.duplicate()) == 6


class OverlapStorage(LocalStorage):
    """Local storage that measures how many chunks read at the same time."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lock = threading.Lock()
        self.active = self.peak = 0

    def iter_range(self, uri: str, start: int, end: int, block_size: int = 1 << 20) -> Iterator[bytes]:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.5)  # long enough for the other threads of the pool to start their chunks
            yield from super().iter_range(uri, start, end, block_size)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.postgres
@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_run_from_the_deployment_entrypoint_takes_chunk_concurrency_from_the_settings(
    concurrency: int, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL: chunks write at once there (SQLite would serialise them on its write lock first).
    source = tmp_path / "CLIENTES_IN_0425.dat"
    generate(source, lines=2000, seed=5)
    storage = OverlapStorage(tmp_path / "store")
    monkeypatch.setattr(resources, "open_storage", lambda settings, source=None: storage)
    monkeypatch.setenv("CLIENTES_DB_URL", pg_url)
    monkeypatch.setenv("CLIENTES_DB_WRITE_LIMIT", "")
    monkeypatch.setenv("CLIENTES_CHUNK_CONCURRENCY", str(concurrency))
    monkeypatch.chdir(ROOT)
    deployed = load_flow_from_entrypoint("flows/ingest.py:ingest_clientes")  # what prefect.yaml names
    result = deployed(source=str(source), chunk_size="40KiB")
    assert result.chunk_count >= 4 and result.chunks_done == result.chunk_count
    if concurrency == 1:
        assert storage.peak == 1
    else:
        assert 1 < storage.peak <= concurrency
