"""SPEC §6: permit or block at call set-up, every reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.decision import Decision, PoolState, decide
from rater.rating.increments import billable_seconds
from rater.records import Increment
from tests.builders import make_attempt

INC = Increment(60, 60)


def pool(remaining: int, payg: bool = False, increment: Increment = INC) -> PoolState:
    return PoolState(remaining_s=remaining, payg_enabled=payg, increment=increment)


@pytest.mark.parametrize(
    ("direction", "emergency"), [("inbound", False), ("inbound", True), ("outbound", True)]
)
@pytest.mark.parametrize(
    "state", [None, pool(0), pool(0, payg=True), pool(600)], ids=["unknown", "empty", "payg", "ok"]
)
def test_free_calls_are_always_permitted(
    direction: str, emergency: bool, state: PoolState | None
) -> None:
    attempt = make_attempt(direction=direction, emergency=emergency)
    assert decide(attempt, state) == Decision("permit", None, "free")


def test_unknown_subscription_blocks_outbound() -> None:
    assert decide(make_attempt(), None) == Decision("block", None, "unknown_subscription")


def test_payg_on_with_pool_left_permits_without_limit_as_included() -> None:
    assert decide(make_attempt(), pool(30, payg=True)) == Decision("permit", None, "included")


def test_payg_on_with_empty_pool_permits_without_limit_as_payg() -> None:
    assert decide(make_attempt(), pool(0, payg=True)) == Decision("permit", None, "payg")
    assert decide(make_attempt(), pool(-60, payg=True)) == Decision("permit", None, "payg")


@pytest.mark.parametrize(
    ("increment", "remaining", "longest"),
    [
        (INC, 90, 60),  # SPEC example
        (INC, 600, 600),
        (INC, 60, 60),
        (Increment(30, 6), 41, 36),
        (Increment(1, 1), 1, 1),
        (Increment(60, 1), 90, 90),
    ],
)
def test_payg_off_with_usable_time_permits_with_limit(
    increment: Increment, remaining: int, longest: int
) -> None:
    decision = decide(make_attempt(zone="international"), pool(remaining, increment=increment))
    assert decision == Decision("permit", longest, "included")


@pytest.mark.parametrize(
    ("increment", "remaining"),
    [(INC, 0), (INC, 59), (Increment(30, 6), 29), (Increment(60, 1), 59), (INC, -120)],
)
def test_payg_off_without_usable_time_blocks(increment: Increment, remaining: int) -> None:
    """Some seconds left but fewer than the minimum charge still block."""
    assert decide(make_attempt(), pool(remaining, increment=increment)) == Decision(
        "block", None, "exhausted"
    )


@settings(max_examples=300, deadline=None)
@given(
    remaining=st.integers(-1_000, 5_000),
    payg=st.booleans(),
    minimum=st.integers(1, 120),
    step=st.integers(1, 120),
)
def test_decision_invariants(remaining: int, payg: bool, minimum: int, step: int) -> None:
    increment = Increment(minimum, step)
    decision = decide(make_attempt(), pool(remaining, payg, increment))
    if payg:
        assert decision.decision == "permit"
        assert decision.max_duration_s is None
        assert decision.reason == ("included" if remaining > 0 else "payg")
    elif decision.decision == "permit":
        assert decision.reason == "included"
        assert decision.max_duration_s is not None
        assert decision.max_duration_s >= 1  # the schema's minimum
        assert billable_seconds(decision.max_duration_s, increment) <= remaining
        assert billable_seconds(decision.max_duration_s + 1, increment) > remaining
    else:
        assert decision == Decision("block", None, "exhausted")
        assert remaining < minimum or remaining < step
