"""Billable seconds (SPEC §5.2) and the longest call that fits a pool (SPEC §6)."""

from __future__ import annotations

from rater.records.shapes import Increment


def billable_seconds(duration_s: int, increment: Increment) -> int:
    if duration_s <= 0:
        return 0
    steps = -(-duration_s // increment.step_s)
    return max(increment.minimum_s, steps * increment.step_s)


def max_duration_within(remaining_s: int, increment: Increment) -> int:
    """The longest duration whose billable seconds fit in `remaining_s`; 0 when none does.

    billable(d) = max(M, ceil(d/I)*I) fits iff M <= remaining and ceil(d/I)*I <= remaining,
    so the answer is the largest multiple of I not above `remaining`, provided M fits.
    """
    if remaining_s < increment.minimum_s:
        return 0
    return (remaining_s // increment.step_s) * increment.step_s
