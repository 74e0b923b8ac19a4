"""The reject guard's decision rule (pure): when a file is refused, early or at its end."""

from __future__ import annotations

import pytest

from clientes_ingest.guard import RejectPolicy, Tally, describe, early_verdict, final_verdict

POLICY = RejectPolicy()  # max_ratio 0.5, early after 10,000 non-blank lines at 90%


def test_defaults_and_the_early_bound() -> None:
    assert (POLICY.max_ratio, POLICY.max_stored, POLICY.min_lines) == (0.5, 10_000_000, 10_000)
    assert POLICY.early_share == pytest.approx(0.9)
    assert RejectPolicy(max_ratio=0.2).early_share == pytest.approx(0.84)
    for bad in ({"max_ratio": -0.1}, {"max_ratio": 1.5}, {"max_stored": -1}, {"min_lines": 0}):
        with pytest.raises(ValueError):
            RejectPolicy(**bad)  # type: ignore[arg-type]


def test_share_excludes_blank_lines() -> None:
    assert Tally(lines=100, blank=50, rejected=25).share == 0.5
    assert Tally(lines=10, blank=10, rejected=0).share == 0.0  # only blank lines: nothing judged
    assert Tally().share == 0.0


def test_final_verdict_is_strictly_above_the_bound() -> None:
    assert not final_verdict(POLICY, Tally(lines=100, rejected=50))  # exactly 50%: still a file
    assert final_verdict(POLICY, Tally(lines=100, rejected=51))
    assert final_verdict(POLICY, Tally(lines=160, blank=60, rejected=51))  # 51 of 100 non-blank
    assert not final_verdict(RejectPolicy(max_ratio=1.0), Tally(lines=100, rejected=100))  # 1 turns it off


def test_early_verdict_needs_enough_lines_and_a_share_far_beyond_the_bound() -> None:
    big = 10_000_000
    assert not early_verdict(POLICY, Tally(lines=9_999, rejected=9_999), big)  # too few lines, even at 100%
    assert early_verdict(POLICY, Tally(lines=10_000, rejected=9_000), big)  # 90% of 10,000
    assert not early_verdict(POLICY, Tally(lines=10_000, rejected=8_999), big)
    # A legitimately bad start of a good file: 80% of its first 300,000 lines (beyond the bound, not far).
    assert not early_verdict(POLICY, Tally(lines=300_000, rejected=240_000), big)
    # Blank lines do not count towards the minimum.
    assert not early_verdict(POLICY, Tally(lines=20_000, blank=10_001, rejected=9_999), big)


def test_early_verdict_when_the_outcome_is_already_certain() -> None:
    # 60 rejects of a 100-line file: even if every other line were valid the share would exceed 50%.
    assert early_verdict(POLICY, Tally(lines=60, rejected=60), 100)
    assert not early_verdict(POLICY, Tally(lines=50, rejected=50), 100)
    assert not early_verdict(RejectPolicy(max_ratio=1.0), Tally(lines=10**6, rejected=10**6), 10**6)


def test_tallies_add_up_with_their_reasons() -> None:
    total = Tally(10, 1, 4, {"dni": 3, "estado": 1}).plus(Tally(5, 0, 2, {"dni": 1, "encoding": 1}))
    assert (total.lines, total.blank, total.rejected) == (15, 1, 6)
    assert total.reasons == {"dni": 4, "estado": 1, "encoding": 1}


def test_the_message_names_the_share_the_bound_and_the_top_reasons() -> None:
    seen = Tally(lines=12_000, blank=0, rejected=11_000,
                 reasons={"encoding": 6_000, "field_count": 4_000, "dni": 900, "estado": 100})
    text = describe(POLICY, seen, file_lines=800_000, early=True)
    assert text == ("rejected_file: 91.7% of 12,000 non-blank lines rejected, above the limit of 50% "
                    "(CLIENTES_MAX_REJECT_RATIO); top reasons: encoding 50.0%, field_count 33.3%, dni 7.5%; "
                    "stopped early after 12,000 of 800,000 lines; no row of this file is kept in clientes")
    final = describe(POLICY, Tally(lines=40, rejected=24, reasons={"field_count": 24}), file_lines=40, early=False)
    assert "stopped early" not in final and "60.0% of 40 non-blank lines" in final
