"""What loading one chunk reports (``ChunkResult``) and how a process measures its own peak memory.

Kept apart from the loader so that a process that only receives results (the flow-run process, when
chunks load in child processes) unpickles them without importing pyarrow. Requires: Linux /proc for
``peak_rss_bytes`` (falls back to ``getrusage``).
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's outcome: skipped if an earlier run had committed it; its counts, time, memory and CPU.

    ``stopped``: nothing was loaded because the job was refused (``rejected_file``).
    """

    job_id: int
    chunk_no: int
    skipped: bool
    lines: int
    rows_loaded: int
    rows_rejected: int
    blank_lines: int
    duration_s: float
    peak_rss_bytes: int
    cpu_seconds: float
    stopped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    Linux's VmHWM, which starts afresh at exec; ``ru_maxrss`` does not (a child started from a big
    parent reports the parent's peak), so it is only the fallback where /proc is missing.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
