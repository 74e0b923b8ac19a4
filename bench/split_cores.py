"""Split-core mode (``python -m bench.run --split-cores``): the database on its own host, the pipeline in a
1-core pod, emulated on one machine by CPU affinity.

* The PostgreSQL cluster (its postmaster and every existing child: backends, checkpointer, WAL writer,
  ...) is pinned to ``SERVER_CPU`` with ``os.sched_setaffinity``; backends started later are forked by
  the postmaster and inherit its affinity.
* The measured client tree is pinned to ``CLIENT_CPU`` (``taskset -c 0`` in front of the command; its
  children inherit it). For ``clientes-ingest run`` that tree includes Prefect's ephemeral API server,
  which in production runs elsewhere; during the load phase it only records task-run states.
* On exit (normal, exception, Ctrl-C or SIGTERM) every process of the cluster gets back the affinity the
  postmaster had before.

Requires: at least 2 CPUs, ``taskset`` (util-linux), and the right to change the affinity of the
server's processes (root, or the same user as the server); the server found through ``pg_admin``
must run on this machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from typing import Any

import psutil
import sqlalchemy as sa

CLIENT_CPU = 0
SERVER_CPU = 1


def postmaster_pid(pg_admin: str) -> int:
    """The pid of the postmaster of the server behind ``pg_admin`` (the parent of our backend)."""
    engine = sa.create_engine(pg_admin)
    try:
        with engine.connect() as conn:
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    finally:
        engine.dispose()
    try:
        parent = psutil.Process(backend).parent()
    except psutil.NoSuchProcess:
        parent = None
    if parent is None:
        raise RuntimeError(f"--split-cores: PostgreSQL backend {backend} is not a process of this machine; "
                           "the server must run here to be pinned to a CPU")
    return parent.pid


def cluster_pids(postmaster: int) -> list[int]:
    """The postmaster and all its current descendants."""
    root = psutil.Process(postmaster)
    return [postmaster] + [p.pid for p in root.children(recursive=True)]


def set_affinity(pids: list[int], cpus: set[int]) -> int:
    """Pin each process of ``pids`` to ``cpus``; processes that exited meanwhile are skipped. Returns the count."""
    done = 0
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cpus)
            done += 1
        except ProcessLookupError:
            continue
        except PermissionError:
            raise RuntimeError(f"--split-cores: not allowed to set the CPU affinity of PostgreSQL process {pid}; "
                               "run the benchmark as root or as the server's user, or drop --split-cores") from None
    return done


def client_prefix() -> list[str]:
    """The command prefix that pins a client tree to ``CLIENT_CPU``."""
    if shutil.which("taskset") is None:
        raise RuntimeError("--split-cores needs taskset (apt-get install util-linux)")
    return ["taskset", "-c", str(CLIENT_CPU)]


def check_cpus() -> None:
    available = os.sched_getaffinity(0)
    if not {CLIENT_CPU, SERVER_CPU} <= available:
        raise RuntimeError(f"--split-cores needs CPUs {CLIENT_CPU} and {SERVER_CPU}; this process may use "
                           f"{sorted(available)}")


@contextlib.contextmanager
def server_pinned(pg_admin: str) -> Iterator[dict[str, Any]]:
    """Pin the PostgreSQL cluster to ``SERVER_CPU`` for the duration; always restore its affinity."""
    check_cpus()
    postmaster = postmaster_pid(pg_admin)
    original = os.sched_getaffinity(postmaster)
    previous_term = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # so that the finally below restores the server's affinity

    signal.signal(signal.SIGTERM, terminate)
    try:
        pinned = set_affinity(cluster_pids(postmaster), {SERVER_CPU})
        print(f"[bench] split cores: {pinned} PostgreSQL processes pinned to CPU {SERVER_CPU}, "
              f"client trees to CPU {CLIENT_CPU}", flush=True)
        yield {"postmaster_pid": postmaster, "server_cpus": [SERVER_CPU], "client_cpus": [CLIENT_CPU],
               "server_processes_pinned": pinned, "server_affinity_before": sorted(original)}
    finally:
        restored = set_affinity(cluster_pids(postmaster), original)
        signal.signal(signal.SIGTERM, previous_term)
        print(f"[bench] split cores: affinity of {restored} PostgreSQL processes restored to CPUs "
              f"{sorted(original)}", flush=True)
