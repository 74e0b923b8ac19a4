"""bench.run.Bench.warm_up: a real, unmeasured ``clientes-ingest run`` of the file's first lines (dev env)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.run import Bench
from clientes_ingest.devtools.generator import generate

pytestmark = pytest.mark.slow


def test_warm_up_reads_the_file_and_runs_the_pipeline_on_its_head(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "CLIENTES_IN_1GB.dat"
    generate(data, lines=3000, seed=1)
    monkeypatch.chdir(tmp_path)
    env = {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PATH": os.environ["PATH"]}
    bench = Bench("postgresql+psycopg://postgres@127.0.0.1:5432/test", tmp_path / "work", env)
    warm = bench.warm_up(data, lines=200)
    assert warm["lines"] == 200 and 0 < warm["run_wall_s"] <= warm["seconds"]
    assert (tmp_path / "prefect-home" / "prefect.db").is_file()  # Prefect's first start is paid here
    assert not (tmp_path / "work" / "warm_up").exists()  # its scratch directory is gone
