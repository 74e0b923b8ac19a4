"""What a flow over many jobs (``purge-old-jobs``, ``recover-abandoned-jobs``) raises when some job failed.

The flow goes on past a job that fails and raises at the end, with every job's result, so that its
caller (the CLI) can report them all. Pure: no Prefect, no IO.
"""

from __future__ import annotations

from typing import Generic, TypeVar

R = TypeVar("R")  # one job's result (``flow_results.PurgeResult``, ``RecoveryResult``)


class SomeJobsFailed(RuntimeError, Generic[R]):
    """Raised at the end of a flow over many jobs in which some job failed; ``results`` has them all."""

    def __init__(self, message: str, results: list[R]) -> None:
        super().__init__(message)
        self.results = results

    @classmethod
    def check(cls, results: list[R], failed: list[int], what: str, then: str = "") -> None:
        """Raise if any job failed (``failed``: their ids), saying ``"2 of 5 <what>: 3, 4<then>"``."""
        if failed:
            raise cls(f"{len(failed)} of {len(results)} {what}: {', '.join(map(str, failed))}{then}", results)
