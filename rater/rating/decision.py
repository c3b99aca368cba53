"""Permit or block at call set-up (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rater.rating.increments import max_duration_within
from rater.records.shapes import CallAttempt, Increment

DecisionKind = Literal["permit", "block"]
DecisionReason = Literal["free", "included", "payg", "exhausted", "unknown_subscription"]


@dataclass(frozen=True, slots=True)
class Decision:
    decision: DecisionKind
    max_duration_s: int | None
    reason: DecisionReason


@dataclass(frozen=True, slots=True)
class PoolState:
    """What a decision needs to know of one zone of a subscription, read at one instant."""

    remaining_s: int
    payg_enabled: bool
    increment: Increment


def decide(attempt: CallAttempt, pool: PoolState | None) -> Decision:
    """`pool` is None when the subscription is unknown."""
    if attempt.is_free:
        return Decision("permit", None, "free")
    if pool is None:
        return Decision("block", None, "unknown_subscription")
    if pool.payg_enabled:
        return Decision("permit", None, "included" if pool.remaining_s > 0 else "payg")
    longest = max_duration_within(pool.remaining_s, pool.increment)
    if longest > 0:
        return Decision("permit", longest, "included")
    return Decision("block", None, "exhausted")
