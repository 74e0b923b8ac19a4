"""bench.server_mode: the table of the Kubernetes configuration (pure rendering, no server started)."""

from __future__ import annotations

from bench.server_mode import markdown

VENV = "/root/.cache/clientes-ingest/pipeline-venv/bin"
FLOW = {"cmdline": f"{VENV}/python {VENV}/clientes-ingest run /x.dat --db postgresql://x", "root": True}
WORKER = {"cmdline": f"{VENV}/python -m clientes_ingest.chunk_worker --parent 1", "root": False}


def case(size: str, mode: str, processes: list[dict[str, object]]) -> dict[str, object]:
    return {"size": size, "chunk_isolation": mode, "wall_s": 35.5, "job": {"load_s": 29.2}, "processes": processes}


def test_the_table_sums_a_pods_processes_and_judges_each_against_256_mib() -> None:
    results = {"date": "2026-11-28T01:14:54", "command": "python -m bench.server_mode --tag k8s",
               "pipeline_env": "production-like", "machine": {"load_avg_at_start": [0.6, 0.7, 1.0]},
               "cases": [case("1GB", "thread", [{**FLOW, "peak_rss_mib": 204.0}]),
                         case("1GB", "subprocess",
                              [{**FLOW, "peak_rss_mib": 132.0}, {**WORKER, "peak_rss_mib": 138.0}]),
                         case("5GB", "thread", [{**FLOW, "peak_rss_mib": 270.0}])]}
    rows = [line for line in markdown(results).splitlines() if line.startswith("| 1GB") or line.startswith("| 5GB")]
    assert rows[0].endswith("| flow run (clientes-ingest) 204 | 204 | yes |")
    assert rows[1].endswith("| flow run (clientes-ingest) 132, chunk worker 138 | 270 | yes |")  # each <= 256
    assert rows[2].endswith("| 270 | **no** |")
