"""bench.report: the targets computed from a committed results file (a real run, no database)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import targets

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "2026-12-06-full-quiet.json"


def test_memory_flatness_is_checked_for_every_pipeline_case_including_the_embedded_default() -> None:
    results = json.loads(RESULTS.read_text())
    flat = {t["target"].rsplit("(", 1)[1].rstrip(")"): t for t in targets(results, "1GB", "5GB")
            if t["target"].startswith("memory flat")}
    assert set(flat) == {"core_pg", "core_pg_subprocess", "core_sqlite_default"}
    assert all(t["bound"] == 1.1 for t in flat.values())
    assert flat["core_sqlite_default"]["value"] > 1.0  # 304 / 278 MiB in that run: measured, not assumed
