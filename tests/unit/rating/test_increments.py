"""SPEC §5.2 (billable seconds) and §6 (longest call that fits the pool)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.increments import billable_seconds, max_duration_within
from rater.records import Increment

INC_60_60 = Increment(60, 60)
INC_30_6 = Increment(30, 6)
INC_1_1 = Increment(1, 1)
INC_60_1 = Increment(60, 1)

increments = st.builds(Increment, st.integers(1, 120), st.integers(1, 120))


def test_increment_parse_and_str() -> None:
    assert Increment.parse("30/6") == Increment(30, 6)
    assert str(Increment(60, 1)) == "60/1"


@pytest.mark.parametrize(
    ("increment", "duration", "billable"),
    [
        (INC_60_60, 61, 120),  # SPEC example
        (INC_60_60, 1, 60),
        (INC_60_60, 60, 60),
        (INC_60_60, 120, 120),
        (INC_60_60, 121, 180),
        (INC_30_6, 10, 30),  # SPEC example
        (INC_30_6, 30, 30),
        (INC_30_6, 31, 36),  # SPEC example
        (INC_30_6, 36, 36),
        (INC_30_6, 37, 42),
        (INC_1_1, 1, 1),  # 1/1 is exact
        (INC_1_1, 59, 59),
        (INC_1_1, 86_400, 86_400),
        (INC_60_1, 1, 60),
        (INC_60_1, 61, 61),
        (Increment(30, 7), 22, 30),  # minimum not a multiple of the step
        (Increment(30, 7), 31, 35),
    ],
)
def test_spec_examples(increment: Increment, duration: int, billable: int) -> None:
    assert billable_seconds(duration, increment) == billable


@pytest.mark.parametrize("increment", [INC_60_60, INC_30_6, INC_1_1, INC_60_1])
def test_zero_seconds_bills_nothing(increment: Increment) -> None:
    assert billable_seconds(0, increment) == 0


@settings(max_examples=300, deadline=None)
@given(duration=st.integers(1, 86_400), increment=increments)
def test_billable_properties(duration: int, increment: Increment) -> None:
    billable = billable_seconds(duration, increment)
    assert isinstance(billable, int)
    assert billable >= duration
    assert billable >= increment.minimum_s
    assert billable % increment.step_s == 0 or billable == increment.minimum_s
    # never more than one step beyond the duration, unless the minimum applies
    assert billable < duration + increment.step_s or billable == increment.minimum_s


@settings(max_examples=300, deadline=None)
@given(a=st.integers(0, 86_400), b=st.integers(0, 86_400), increment=increments)
def test_billable_is_monotone(a: int, b: int, increment: Increment) -> None:
    low, high = sorted((a, b))
    assert billable_seconds(low, increment) <= billable_seconds(high, increment)


# --- max_duration_within (SPEC §6) ------------------------------------------------------


@pytest.mark.parametrize(
    ("increment", "remaining", "expected"),
    [
        (INC_60_60, 90, 60),  # SPEC example
        (INC_60_60, 59, 0),
        (INC_60_60, 60, 60),
        (INC_60_60, 119, 60),
        (INC_60_60, 120, 120),
        (INC_60_60, 0, 0),
        (INC_30_6, 29, 0),
        (INC_30_6, 30, 30),
        (INC_30_6, 35, 30),
        (INC_30_6, 36, 36),
        (INC_30_6, 41, 36),
        (INC_1_1, 0, 0),
        (INC_1_1, 1, 1),
        (INC_1_1, 90, 90),
        (INC_60_1, 59, 0),
        (INC_60_1, 60, 60),
        (INC_60_1, 90, 90),
        (Increment(1, 60), 30, 0),  # a tiny minimum does not help when one step doesn't fit
        (Increment(30, 7), 32, 28),
    ],
)
def test_max_duration_near_pool_edge(increment: Increment, remaining: int, expected: int) -> None:
    longest = max_duration_within(remaining, increment)
    assert longest == expected
    assert billable_seconds(longest, increment) <= remaining
    assert billable_seconds(longest + 1, increment) > remaining


@pytest.mark.parametrize("increment", [INC_60_60, INC_30_6, INC_1_1, INC_60_1])
def test_max_duration_with_negative_remaining_is_zero(increment: Increment) -> None:
    """A pool overdrawn by a licence decrease leaves nothing usable."""
    assert max_duration_within(-1, increment) == 0
    assert max_duration_within(-3600, increment) == 0


@settings(max_examples=300, deadline=None)
@given(remaining=st.integers(0, 2_000), increment=increments)
def test_max_duration_matches_brute_force(remaining: int, increment: Increment) -> None:
    """The largest d in [0, remaining + I] whose billable seconds fit in `remaining`."""
    expected = max(
        d
        for d in range(remaining + increment.step_s + 1)
        if billable_seconds(d, increment) <= remaining
    )
    assert max_duration_within(remaining, increment) == expected
