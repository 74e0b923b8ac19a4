"""The reject-ratio guard: when a file is so corrupt that it must be refused as a whole (``rejected_file``).

A daily file has about 20% corrupt lines; a truncated, wrongly-delimited or wrong file has nearly all of
them. A job whose rejected share of non-blank lines exceeds ``max_ratio`` (``CLIENTES_MAX_REJECT_RATIO``,
default 0.5) ends ``rejected_file``. Two decisions, both pure:

* **final** (``final_verdict``): every chunk is committed and the share of the whole file exceeds the bound.
* **early** (``early_verdict``, after every parsed block of every chunk): stop before writing millions of
  rejects when the outcome is certain (the rejects seen already exceed ``max_ratio`` of the whole file's
  lines, so no remaining line can bring the share back under the bound), or when at least ``min_lines``
  non-blank lines were seen and their share is far beyond the bound (at least ``early_share``: by
  default 0.9 for a bound of 0.5). The margin and the minimum keep a legitimately bad first chunk of a
  good file from being misjudged: its share would have to be nine lines in ten over ten thousand lines.

Requires: nothing (no database, no Prefect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MAX_RATIO = 0.5
DEFAULT_MAX_STORED = 10_000_000
EARLY_MIN_LINES = 10_000
EARLY_MARGIN = 0.8  # the early bound lies this far from max_ratio towards 100%
TOP_REASONS = 3


@dataclass(frozen=True)
class RejectPolicy:
    """How many rejects a job tolerates (``max_ratio``) and stores (``max_stored``)."""

    max_ratio: float = DEFAULT_MAX_RATIO
    max_stored: int = DEFAULT_MAX_STORED
    min_lines: int = EARLY_MIN_LINES

    def __post_init__(self) -> None:
        if not 0 <= self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be between 0 and 1, got {self.max_ratio}")
        if self.max_stored < 0 or self.min_lines < 1:
            raise ValueError("max_stored must be >= 0 and min_lines >= 1")

    @property
    def early_share(self) -> float:
        """The share that stops a job early (after ``min_lines`` lines): far beyond ``max_ratio``."""
        return self.max_ratio + EARLY_MARGIN * (1 - self.max_ratio)


@dataclass(frozen=True)
class Tally:
    """Lines judged so far: all of them, the blank ones, the rejected ones, and rejects per reason."""

    lines: int = 0
    blank: int = 0
    rejected: int = 0
    reasons: Mapping[str, int] | None = None

    @property
    def judged(self) -> int:
        """Non-blank lines: the denominator of the share."""
        return max(self.lines - self.blank, 0)

    @property
    def share(self) -> float:
        return self.rejected / self.judged if self.judged else 0.0

    def plus(self, other: Tally) -> Tally:
        reasons = dict(self.reasons or {})
        for reason, count in (other.reasons or {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
        return Tally(self.lines + other.lines, self.blank + other.blank, self.rejected + other.rejected, reasons)


def final_verdict(policy: RejectPolicy, tally: Tally) -> bool:
    """Whether a whole file's tally makes it ``rejected_file``: its share exceeds ``max_ratio``."""
    return tally.share > policy.max_ratio


def early_verdict(policy: RejectPolicy, seen: Tally, file_lines: int) -> bool:
    """Whether to stop a job before its end: the verdict is certain, or the share is far beyond the bound."""
    if policy.max_ratio >= 1:
        return False  # the guard is off: no share exceeds 100%
    if seen.rejected > policy.max_ratio * file_lines:
        return True  # even if every line left were valid, the file's share would exceed the bound
    return seen.judged >= policy.min_lines and seen.share >= policy.early_share


def describe(policy: RejectPolicy, seen: Tally, *, file_lines: int, early: bool) -> str:
    """The job's error text: the share, the bound, the top reasons (codes only, never line content)."""
    reasons = sorted((seen.reasons or {}).items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    top = ", ".join(f"{reason} {100 * count / max(seen.judged, 1):.1f}%" for reason, count in reasons)
    text = (f"rejected_file: {100 * seen.share:.1f}% of {seen.judged:,} non-blank lines rejected, above the "
            f"limit of {100 * policy.max_ratio:.0f}% (CLIENTES_MAX_REJECT_RATIO)")
    if top:
        text += f"; top reasons: {top}"
    if early:
        text += f"; stopped early after {seen.lines:,} of {file_lines:,} lines"
    return text + "; no row of this file is kept in clientes"
