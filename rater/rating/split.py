"""How one call's billable seconds divide between pool, overage and leakage (SPEC §5.5)."""

from __future__ import annotations

from dataclasses import dataclass

from rater.rating.results import THRESHOLDS, Outcome


@dataclass(frozen=True, slots=True)
class Split:
    included_s: int
    overage_s: int
    unbilled_s: int
    outcome: Outcome


FREE = Split(0, 0, 0, "free")


def split_call(billable_s: int, pool_s: int, used_included_s: int, payg_enabled: bool) -> Split:
    remaining = max(0, pool_s - used_included_s)
    included = min(billable_s, remaining)
    excess = billable_s - included
    if excess == 0:
        return Split(included, 0, 0, "included")
    if payg_enabled:
        return Split(included, excess, 0, "overage")
    return Split(included, 0, excess, "exhausted" if remaining > 0 else "blocked")


def thresholds_reached(used_included_s: int, pool_s: int) -> list[int]:
    """Thresholds (percent) that `used_included_s` has reached; a zero pool has none (§5.11)."""
    if pool_s <= 0:
        return []
    return [t for t in THRESHOLDS if used_included_s * 100 >= t * pool_s]
