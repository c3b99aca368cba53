"""What rating one CDR yields, whichever engine (Lua in Redis, or the reference model) rated it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rater.records.shapes import Zone

Outcome = Literal["included", "overage", "exhausted", "blocked", "free"]
RejectReason = Literal[
    "invalid", "unknown_subscription", "future_timestamp", "period_closed", "conflicting_duplicate"
]
SessionEffect = Literal["", "closed", "validity", "cdr_wait"]
THRESHOLDS: tuple[int, ...] = (80, 100)


# Not frozen: one is built per CDR on the hot path, and a frozen dataclass's __init__
# costs about six times a plain one (docs/performance.md). Never mutate one all the same.
@dataclass(slots=True)
class AlertCrossing:
    zone: Zone
    period: str
    threshold: int
    used_included_s: int
    included_s: int
    at_ms: int


@dataclass(slots=True)
class CallRating:
    period: str
    billable_s: int
    included_s: int
    overage_s: int
    unbilled_s: int
    outcome: Outcome
    amount_micro: int
    rate_per_minute: str | None  # as the plan states it; only when overage_s > 0
    rated_at_ms: int
    billing_account_id: str
    currency: str
    alerts: tuple[AlertCrossing, ...] = ()
    replayed: bool = False  # True when this is the stored result of an earlier rating
    # what rating it did to the session whose id is the call_id (SPEC §11.5, §11.6): ""
    # none, "closed" released its reservation, "validity" / "cdr_wait" found it expired by
    # that rule and released it as expired. A replay touches no session.
    session: SessionEffect = ""

    def same_as(self, other: CallRating) -> bool:
        """Equal apart from `replayed` and `session`: what a replay must reproduce exactly."""
        return (self.period, self.billable_s, self.included_s, self.overage_s, self.unbilled_s,
                self.outcome, self.amount_micro, self.rate_per_minute, self.rated_at_ms,
                self.billing_account_id, self.currency, self.alerts) == (
                other.period, other.billable_s, other.included_s, other.overage_s,
                other.unbilled_s, other.outcome, other.amount_micro, other.rate_per_minute,
                other.rated_at_ms, other.billing_account_id, other.currency, other.alerts)


@dataclass(slots=True)
class ZoneCounters:
    """One zone's counters of one subscription in one period."""

    used_included_s: int = 0
    overage_s: int = 0
    unbilled_s: int = 0
    overage_micro: int = 0
    reserved_s: int = 0  # held by open and terminated sessions (SPEC §11.2)


@dataclass(slots=True)
class Rejection:
    reason: RejectReason
    detail: str
