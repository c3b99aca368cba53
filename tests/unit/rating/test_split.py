"""SPEC §5.5 (split and outcome) and §5.11 (thresholds)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.results import THRESHOLDS
from rater.rating.split import FREE, Split, split_call, thresholds_reached


@pytest.mark.parametrize(
    ("billable", "pool", "used", "payg", "expected"),
    [
        # included: no excess, PAYG irrelevant
        (60, 600, 0, False, Split(60, 0, 0, "included")),
        (60, 600, 0, True, Split(60, 0, 0, "included")),
        (600, 600, 0, False, Split(600, 0, 0, "included")),  # fills the pool exactly
        (60, 600, 540, False, Split(60, 0, 0, "included")),  # takes the last minute
        (0, 0, 0, False, Split(0, 0, 0, "included")),  # a 0 s call has no excess
        # overage: PAYG on, some excess
        (120, 600, 540, True, Split(60, 60, 0, "overage")),  # crosses the limit
        (120, 600, 600, True, Split(0, 120, 0, "overage")),  # pool already empty
        (60, 0, 0, True, Split(0, 60, 0, "overage")),  # zero pool
        # exhausted: PAYG off, crosses the limit
        (120, 600, 540, False, Split(60, 0, 60, "exhausted")),
        (601, 600, 0, False, Split(600, 0, 1, "exhausted")),
        # blocked: PAYG off, pool already empty
        (120, 600, 600, False, Split(0, 0, 120, "blocked")),
        (60, 0, 0, False, Split(0, 0, 60, "blocked")),
        (60, 600, 700, False, Split(0, 0, 60, "blocked")),  # overdrawn by a licence decrease
        (60, 600, 700, True, Split(0, 60, 0, "overage")),
    ],
)
def test_split_outcomes(billable: int, pool: int, used: int, payg: bool, expected: Split) -> None:
    assert split_call(billable, pool, used, payg) == expected


def test_free_split_is_all_zero() -> None:
    assert Split(0, 0, 0, "free") == FREE


@settings(max_examples=300, deadline=None)
@given(
    billable=st.integers(0, 100_000),
    pool=st.integers(0, 100_000),
    used=st.integers(0, 200_000),
    payg=st.booleans(),
)
def test_split_invariants(billable: int, pool: int, used: int, payg: bool) -> None:
    split = split_call(billable, pool, used, payg)
    remaining = max(0, pool - used)
    assert split.included_s + split.overage_s + split.unbilled_s == billable
    assert split.included_s == min(billable, remaining)
    assert min(split.included_s, split.overage_s, split.unbilled_s) >= 0
    if payg:
        assert split.unbilled_s == 0
    else:
        assert split.overage_s == 0
    excess = billable - split.included_s
    expected_outcome = (
        "included" if excess == 0
        else "overage" if payg
        else "exhausted" if remaining > 0
        else "blocked"
    )
    assert split.outcome == expected_outcome


def test_thresholds_are_80_and_100() -> None:
    assert THRESHOLDS == (80, 100)


@pytest.mark.parametrize(
    ("used", "pool", "expected"),
    [
        (0, 600, []),
        (479, 600, []),
        (480, 600, [80]),  # exactly 80 %
        (599, 600, [80]),
        (600, 600, [80, 100]),  # exactly 100 %
        (700, 600, [80, 100]),
        (4, 5, [80]),  # 80 % of a pool that is not a multiple of 100
        (3, 5, []),
        (0, 0, []),  # a zero pool has no alerts
        (60, 0, []),
    ],
)
def test_thresholds_reached(used: int, pool: int, expected: list[int]) -> None:
    assert thresholds_reached(used, pool) == expected


@settings(max_examples=300, deadline=None)
@given(used=st.integers(0, 10**7), pool=st.integers(1, 10**7))
def test_thresholds_exact_integer_comparison(used: int, pool: int) -> None:
    reached = thresholds_reached(used, pool)
    assert (80 in reached) == (used * 5 >= pool * 4)
    assert (100 in reached) == (used >= pool)
