"""bench.roles: naming the processes of a measured pipeline run (pure, no processes started)."""

from __future__ import annotations

from bench.roles import API_SERVER, CHUNK_WORKER, FLOW, describe_roles, process_role, role_summary

VENV = "/root/.cache/clientes-ingest/pipeline-venv"
FLOW_CMD = f"{VENV}/bin/python {VENV}/bin/clientes-ingest run /data/CLIENTES_IN_1GB.dat --db postgresql://x --quiet"
SERVER_CMD = (f"{VENV}/bin/python -m uvicorn --app-dir {VENV}/lib/python3.11/site-packages --factory "
              "prefect.server.api.server:create_app --host 127.0.0.1 --port 8123")
WORKER_CMD = f"{VENV}/bin/python -m clientes_ingest.chunk_worker"


def test_roles_from_command_lines_even_under_a_clientes_ingest_directory() -> None:
    assert process_role(FLOW_CMD, root=True) == FLOW
    assert process_role(SERVER_CMD, root=False) == API_SERVER
    assert process_role(WORKER_CMD, root=False) == CHUNK_WORKER
    # A persistent pool worker may carry arguments after the module name.
    assert process_role(WORKER_CMD + " --pool 2", root=False) == CHUNK_WORKER


def test_results_without_root_flag_fall_back_to_the_command_name() -> None:
    old_flow = "/usr/bin/python3.11 /usr/local/bin/clientes-ingest run /x.dat --db postgresql://x"
    assert process_role(old_flow) == FLOW
    assert process_role(SERVER_CMD) == API_SERVER
    assert process_role("/usr/bin/taskset -c 0 sleep 1") == "/usr/bin/taskset -c 0 sleep 1"


def test_role_summary_groups_chunk_workers_and_marks_the_server_as_not_pipeline() -> None:
    processes = [
        {"cmdline": SERVER_CMD, "root": False, "peak_rss_mib": 291.0, "cpu_seconds": 3.0},
        {"cmdline": WORKER_CMD, "root": False, "peak_rss_mib": 150.5, "cpu_seconds": 1.0},
        {"cmdline": FLOW_CMD, "root": True, "peak_rss_mib": 268.0, "cpu_seconds": 5.0},
        {"cmdline": WORKER_CMD, "root": False, "peak_rss_mib": 162.4, "cpu_seconds": 1.5},
    ]
    summary = role_summary(processes)
    assert [(r["role"], r["processes"], r["peak_rss_mib"], r["pipeline"]) for r in summary] == [
        (FLOW, 1, 268.0, True), (CHUNK_WORKER, 2, 162.4, True), (API_SERVER, 1, 291.0, False)]
    assert summary[1]["cpu_seconds"] == 2.5
    assert describe_roles(processes) == f"{FLOW} 268, {CHUNK_WORKER} 162 (x2), {API_SERVER} 291"


def test_a_child_whose_command_line_was_not_read_is_unknown_not_a_failed_pipeline_process() -> None:
    from bench.report import rss_targets
    from bench.roles import UNREAD

    processes = [{"cmdline": FLOW_CMD, "root": True, "peak_rss_mib": 190.0, "cpu_seconds": 5.0},
                 {"cmdline": "", "root": False, "peak_rss_mib": 265.0, "cpu_seconds": 3.0}]
    assert process_role("", root=False) == UNREAD
    summary = role_summary(processes)
    assert [(r["role"], r["pipeline"]) for r in summary] == [(FLOW, True), (UNREAD, None)]
    targets = rss_targets("1GB core_pg", {"processes": processes})
    assert [t["met"] for t in targets] == [True, None]  # shown, not counted as a miss
