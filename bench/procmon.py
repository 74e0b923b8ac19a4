"""Sample the memory and CPU of a process tree while a benchmark runs (psutil, a background thread).

Every ``interval`` seconds: the RSS of the root process and of each descendant, plus the CPU seconds
each has used. Processes that exit between two samples keep their last sample (their final tenth of
a second of CPU is lost; RSS peaks shorter than the interval can be missed: the per-chunk
``ru_maxrss`` in ``ingest_chunks.peak_rss_bytes`` is the exact counterpart). PostgreSQL backends are
not children of the client: pass ``watch_names={"postgres"}`` to add the server's processes, reported
apart. Each process records whether it is the measured command (``root``) and its command line, read
again on every sample (a child first seen between fork and exec shows its parent's; bench.roles names
processes by it). The whole machine's busy CPU over the run is recorded too: on a shared machine it says how much
other work competed with the measured one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class ProcStats:
    pid: int
    name: str
    cmdline: str
    role: str  # "tree" (the command and its children) or "server" (a watched server process)
    root: bool = False  # the measured command itself
    peak_rss: int = 0
    cpu_first: float | None = None
    cpu_last: float = 0.0

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_last - (self.cpu_first or 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "cmdline": self.cmdline, "role": self.role, "root": self.root,
                "peak_rss_mib": round(self.peak_rss / 2**20, 1), "cpu_seconds": round(self.cpu_seconds, 2)}


@dataclass
class TreeSampler:
    """Samples ``root_pid`` and its descendants (and watched server processes) until stopped."""

    root_pid: int
    interval: float = 0.1
    watch_names: frozenset[str] = frozenset()
    procs: dict[int, ProcStats] = field(default_factory=dict)
    # (t, root process RSS, whole tree RSS, largest process RSS), MiB
    timeline: list[tuple[float, float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tree-sampler")
        # Server processes already running: their CPU counts from now on, not since they started.
        self._baseline: dict[int, float] = {}
        for proc in self._watched():
            try:
                times = proc.cpu_times()
                self._baseline[proc.pid] = times.user + times.system
            except psutil.Error:
                continue

    def _watched(self) -> list[psutil.Process]:
        if not self.watch_names:
            return []
        return [p for p in psutil.process_iter(["name"]) if p.info["name"] in self.watch_names]

    def start(self) -> TreeSampler:
        self._t0 = time.perf_counter()
        self._sys0 = psutil.cpu_times()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        sys1 = psutil.cpu_times()
        self.machine_busy_cpu_s = sum(getattr(sys1, f) - getattr(self._sys0, f)
                                      for f in ("user", "system", "nice", "irq", "softirq"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        now = time.perf_counter() - self._t0
        try:
            root = psutil.Process(self.root_pid)
            tree = [(root, "tree")] + [(p, "tree") for p in root.children(recursive=True)]
        except psutil.Error:
            tree = []
        members = tree + [(p, "server") for p in self._watched()]
        total = biggest = root_rss = 0
        for proc, role in members:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    stats = self.procs.get(proc.pid)
                    if stats is None:
                        cmd = " ".join(proc.cmdline())[:200]
                        stats = self.procs[proc.pid] = ProcStats(proc.pid, proc.name(), cmd, role,
                                                                 root=proc.pid == self.root_pid)
                        stats.cpu_first = self._baseline.get(proc.pid, 0.0)
                    elif role == "tree" and not stats.root:
                        # A child first seen between fork and exec shows its parent's command line:
                        # read it again (chunk workers are told apart by theirs).
                        # An exiting process reads as an empty command line: keep the last one read.
                        stats.name, stats.cmdline = proc.name(), " ".join(proc.cmdline())[:200] or stats.cmdline
            except psutil.Error:
                continue
            stats.peak_rss = max(stats.peak_rss, rss)
            stats.cpu_last = times.user + times.system
            if proc.pid == self.root_pid:
                root_rss = rss
            if role == "tree":
                total += rss
                biggest = max(biggest, rss)
        if total:
            self.timeline.append((round(now, 2), round(root_rss / 2**20, 1), round(total / 2**20, 1),
                                  round(biggest / 2**20, 1)))

    def summary(self) -> dict[str, Any]:
        tree = [p for p in self.procs.values() if p.role == "tree"]
        server = [p for p in self.procs.values() if p.role == "server"]
        return {
            "peak_rss_mib_max_process": round(max((p.peak_rss for p in tree), default=0) / 2**20, 1),
            "cpu_seconds_client": round(sum(p.cpu_seconds for p in tree), 2),
            "cpu_seconds_server": round(sum(p.cpu_seconds for p in server), 2),
            "machine_busy_cpu_s": round(getattr(self, "machine_busy_cpu_s", 0.0), 1),
            "processes": [p.as_dict() for p in sorted(tree, key=lambda p: -p.peak_rss)],
            "server_processes": [p.as_dict() for p in sorted(server, key=lambda p: -p.cpu_seconds)[:4]],
        }
