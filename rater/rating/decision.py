"""Permit or block at call set-up (SPEC §6), with the user's spend limit (SPEC §14)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rater.rating.increments import max_duration_within
from rater.rating.spend import SpendTerms
from rater.records.shapes import CallAttempt, Increment

DecisionKind = Literal["permit", "block"]
DecisionReason = Literal["free", "included", "payg", "exhausted", "unknown_subscription",
                         "spend_limit"]


@dataclass(frozen=True, slots=True)
class Decision:
    decision: DecisionKind
    max_duration_s: int | None
    reason: DecisionReason


@dataclass(frozen=True, slots=True)
class PoolState:
    """What a decision needs to know of one zone of a subscription, read at one instant;
    `spend` is the caller's user's limit and what counts against it (None: no limit)."""

    remaining_s: int
    payg_enabled: bool
    increment: Increment
    spend: SpendTerms | None = None


def decide(attempt: CallAttempt, pool: PoolState | None) -> Decision:
    """`pool` is None when the subscription is unknown."""
    if attempt.is_free:
        return Decision("permit", None, "free")
    if pool is None:
        return Decision("block", None, "unknown_subscription")
    spend = pool.spend
    if spend is not None and spend.at_limit:
        return Decision("block", None, "spend_limit")
    if pool.payg_enabled:
        reason: DecisionReason = "included" if pool.remaining_s > 0 else "payg"
        cap = spend.cap(pool.remaining_s, pool.increment) if spend is not None else None
        if cap is None:
            return Decision("permit", None, reason)
        if cap > 0:  # the longest call whose worst-case charge the limit still allows
            return Decision("permit", cap, reason)
        return Decision("block", None, "spend_limit")
    longest = max_duration_within(pool.remaining_s, pool.increment)
    if longest > 0:
        return Decision("permit", longest, "included")
    return Decision("block", None, "exhausted")
