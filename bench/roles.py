"""Name the processes of a measured pipeline run by what they do, and sum their peak RSS per role.

A ``clientes-ingest run`` tree holds: the flow-run process (the command itself), Prefect's ephemeral
API server (``python -m uvicorn ... prefect.server.api.server``; in production the Prefect server is
its own deployment, so it is shown but is not a pipeline process), and with
``CLIENTES_CHUNK_ISOLATION=subprocess`` the chunk workers (``python -m clientes_ingest.chunk_worker``:
one per chunk, or a pool living for the whole run; both are matched by their command line).
Pure functions over the process dicts of bench.procmon; no psutil here.
"""

from __future__ import annotations

from typing import Any

FLOW = "flow run (clientes-ingest)"
CHUNK_WORKER = "chunk worker"
API_SERVER = "Prefect ephemeral API server"
UNREAD = "child whose command line was not read"
ROLE_ORDER = (FLOW, CHUNK_WORKER, API_SERVER, UNREAD)


def process_role(cmdline: str, *, root: bool | None = None) -> str:
    """The role of a process of a pipeline run, from its command line (``root``: the measured command)."""
    if not cmdline.strip() and not root:
        return UNREAD  # psutil read nothing (results of runs before procmon kept the last command line read)
    if "clientes_ingest.chunk_worker" in cmdline:
        return CHUNK_WORKER
    if "uvicorn" in cmdline or "prefect.server" in cmdline or " server start" in cmdline:
        return API_SERVER
    if root:
        return FLOW
    # Results written before procmon recorded ``root``: the flow run is the ``clientes-ingest run`` command.
    # (The path alone is not enough: the pipeline venv lives under a directory named clientes-ingest.)
    if root is None and any(word.endswith("clientes-ingest") for word in cmdline.split()[:2]):
        return FLOW
    return cmdline[:60]


def is_pipeline_role(role: str) -> bool | None:
    """Whether a process of this role runs in the pipeline's pods (the Prefect server does not); None: unknown."""
    if role == UNREAD:
        return None
    return role != API_SERVER


def role_summary(processes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per role: how many processes, the largest peak RSS among them, their CPU seconds; known roles first."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for proc in processes:
        grouped.setdefault(process_role(proc["cmdline"], root=proc.get("root")), []).append(proc)
    order = {role: i for i, role in enumerate(ROLE_ORDER)}
    return [{"role": role, "processes": len(procs), "peak_rss_mib": max(p["peak_rss_mib"] for p in procs),
             "cpu_seconds": round(sum(p.get("cpu_seconds", 0.0) for p in procs), 2),
             "pipeline": is_pipeline_role(role)}
            for role, procs in sorted(grouped.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))]


def describe_roles(processes: list[dict[str, Any]]) -> str:
    """``flow run (clientes-ingest) 268, chunk worker 160 (x32), Prefect ephemeral API server 291``."""
    return ", ".join(f"{r['role']} {r['peak_rss_mib']:.0f}" + (f" (x{r['processes']})" if r["processes"] > 1 else "")
                     for r in role_summary(processes))
