"""Per-user spend limits (SPEC §14), pure: what a user's limit allows a decision to grant,
what a session's reservation may cost at worst, and when a user is at the limit.

A user's limit is weighed, in one period, against what the user was charged for overage
(`spent`) and the worst-case amounts that the user's open and terminated sessions reserve
(`reserved`). A session's worst case is the charge of the part of its reservation that
the pool could not carry when it was decided:
`charge(max(0, reserved_billable - max(0, available_included)))`.

The model (`rater.rating.model`, `rater.rating.session_model`) and §6 decisions
(`rater.rating.decision`) use these functions; lua/lib.lua states them again for Redis,
and the session differential test holds the two together. docs/sessions.md explains the
rules and what can still push a user over the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rater.rating.increments import max_duration_within
from rater.rating.money import overage_amount, rate_to_micro, to_micro
from rater.records.shapes import Increment


def max_overage_within(budget_micro: int, rate_micro: int) -> int | None:
    """The most overage seconds whose charge fits in `budget_micro`; None when the rate is
    0 (any number of seconds is free: no cap), 0 when the budget is negative.

    With `r` the rate in micro-units a minute, SPEC §5.6 charges s seconds
    `round_half_up(s·r/60) = floor((s·r + 30) / 60)` micro-units. For integers:

        floor((s·r + 30)/60) <= B  <=>  s·r + 30 < 60·B + 60  <=>  s·r <= 60·B + 29
                                   <=>  s <= floor((60·B + 29) / r) = floor((120·B + 58) / 2r)

    and floor((120·B + 58)/2r) = floor((120·B + 59)/2r): 120·B + 59 is odd, so no multiple
    of the even 2r lies in between. The charge grows with s, so every smaller s fits too.
    tests/unit/rating/test_spend.py checks this against `money.overage_amount`.
    """
    if rate_micro <= 0:
        return None
    if budget_micro < 0:
        return 0
    return (120 * budget_micro + 59) // (2 * rate_micro)


def reservation_amount(reserved_s: int, available_s: int, rate_per_minute: Decimal) -> int:
    """The worst-case charge (micro-units) of a reservation of `reserved_s` billable seconds
    decided when `available_s` included seconds were available (§11.2; negative when the
    pool is overrun): the charge of what the pool could not carry."""
    overage = reserved_s - max(0, available_s)
    return to_micro(overage_amount(overage, rate_per_minute)) if overage > 0 else 0


@dataclass(frozen=True, slots=True)
class SpendTerms:
    """What one decision for one user weighs against the user's limit, in the period of
    the pool it decides on: the zone's PAYG rate, the limit (None: no limit), the overage
    the user was charged, and what the user's *other* sessions reserve."""

    rate_per_minute: Decimal
    limit_micro: int | None = None
    spent_micro: int = 0
    others_micro: int = 0

    @property
    def at_limit(self) -> bool:
        """At the limit: every outbound non-emergency decision for the user is refused."""
        return (self.limit_micro is not None
                and self.spent_micro + self.others_micro >= self.limit_micro)

    @property
    def budget_micro(self) -> int | None:
        """What a new reservation may still cost at worst; None without a limit."""
        if self.limit_micro is None:
            return None
        return self.limit_micro - self.spent_micro - self.others_micro

    def cap(self, available_s: int, increment: Increment) -> int | None:
        """The longest call whose reservation's worst case fits in the budget, with PAYG
        on; None when nothing caps it (no limit, or a free rate)."""
        budget = self.budget_micro
        if budget is None:
            return None
        overage = max_overage_within(budget, rate_to_micro(self.rate_per_minute))
        if overage is None:
            return None
        return max_duration_within(max(0, available_s) + overage, increment)

    def amount(self, reserved_s: int, available_s: int) -> int:
        """A grant's reserved amount: its worst case (within the budget by the cap)."""
        return reservation_amount(reserved_s, available_s, self.rate_per_minute)

    def held(self, reserved_s: int, available_s: int) -> int:
        """The amount of seconds a session must hold and may not shrink (the used seconds of
        an update that gets no more, or of a terminate): its worst case, with a limit capped
        at what the budget still has (never below 0), so that no session request makes
        `spent + reserved` exceed the limit or exceed it further; `rater.rating.sessions.
        held_seconds` caps the seconds the same way with PAYG off."""
        amount = self.amount(reserved_s, available_s)
        budget = self.budget_micro
        return amount if budget is None else min(amount, max(0, budget))
