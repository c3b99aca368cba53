"""The reference rater: SPEC §5 applied to CDRs one at a time, state in plain dicts.

It is the oracle the Redis/Lua engine is tested against, and the tool to
rebuild expected totals from a CDR file. Check order is §5.10's:
unknown subscription, future timestamp, period closed, duplicates. Duplicates
are found within the start month and the months either side (`start_month`),
the horizon the Redis layout keeps. Credit-control sessions (SPEC §11) are in
`sessions` (rater.rating.session_model); a new CDR closes its call's session. Per-user
spend limits (SPEC §14) are in `limits`, weighed against `user_amounts` (overage charged)
and `user_reserved` (the worst-case amounts of the user's sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rater.rating.clock import RatingClock, format_ms, from_ms
from rater.rating.increments import billable_seconds
from rater.rating.money import overage_amount, to_micro
from rater.rating.periods import period_of
from rater.rating.results import AlertCrossing, CallRating, Rejection, ZoneCounters
from rater.rating.session_model import SessionBook
from rater.rating.spend import SpendTerms
from rater.rating.split import FREE, split_call, thresholds_reached
from rater.rating.subscription_rules import check_upsert
from rater.records.shapes import Cdr, Subscription, Zone


@dataclass(slots=True)
class ReferenceRater:
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    counters: dict[tuple[str, str, Zone], ZoneCounters] = field(default_factory=dict)
    user_seconds: dict[tuple[str, str, str, Zone], int] = field(default_factory=dict)
    # rated calls by (subscription, call_id, start month): ids are remembered per month
    rated: dict[tuple[str, str, int], tuple[str, CallRating]] = field(default_factory=dict)
    alerted: set[tuple[str, str, Zone, int]] = field(default_factory=set)
    # SPEC §14: (subscription, user) -> monthly limit; (subscription, period, user) -> the
    # overage amount charged, and the amount its sessions reserve (micro-units)
    limits: dict[tuple[str, str], int] = field(default_factory=dict)
    user_amounts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    user_reserved: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # credit-control sessions (SPEC §11); their reservations are in `counters`
    sessions: SessionBook = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionBook(self)

    def upsert(self, subscription: Subscription) -> None:
        """ImmutableFieldError when it would change the billing account or currency."""
        check_upsert(self.subscriptions.get(subscription.subscription_id), subscription)
        self.subscriptions[subscription.subscription_id] = subscription

    def set_payg(self, subscription_id: str, enabled: bool) -> bool | None:
        current = self.subscriptions.get(subscription_id)
        if current is None:
            return None
        self.subscriptions[subscription_id] = _with_payg(current, enabled)
        return current.payg_enabled

    def set_spend_limit(self, subscription_id: str, user_id: str,
                        limit_micro: int | None) -> bool:
        """False when the subscription is unknown (nothing changes)."""
        if subscription_id not in self.subscriptions:
            return False
        if limit_micro is None:
            self.limits.pop((subscription_id, user_id), None)
        else:
            self.limits[(subscription_id, user_id)] = limit_micro
        return True

    def zone(self, subscription_id: str, period: str, zone: Zone) -> ZoneCounters:
        return self.counters.setdefault((subscription_id, period, zone), ZoneCounters())

    def spend_terms(self, subscription_id: str, period: str, user_id: str, zone: Zone,
                    own_micro: int = 0) -> SpendTerms:
        """The user's terms for a decision on the zone's pool of `period`; `own_micro` is
        what the deciding session reserves itself (not one of the user's *other* sessions)."""
        sub = self.subscriptions[subscription_id]
        key = (subscription_id, period, user_id)
        return SpendTerms(sub.plan.payg_rate_per_minute[zone],
                          self.limits.get((subscription_id, user_id)),
                          self.user_amounts.get(key, 0),
                          self.user_reserved.get(key, 0) - own_micro)

    def reserve_amount(self, subscription_id: str, period: str, user_id: str,
                       delta_micro: int) -> None:
        """Change what the user's sessions reserve in `period` (a zero total is dropped,
        as Redis drops the field)."""
        key = (subscription_id, period, user_id)
        total = self.user_reserved.get(key, 0) + delta_micro
        if total:
            self.user_reserved[key] = total
        else:
            self.user_reserved.pop(key, None)

    def rate(
        self, cdr: Cdr, fingerprint: str, clock: RatingClock, rated_at_ms: int
    ) -> CallRating | Rejection:
        sub = self.subscriptions.get(cdr.subscription_id)
        if sub is None:
            return Rejection(
                "unknown_subscription", f"subscription {cdr.subscription_id!r} is not known"
            )
        ahead_ms = cdr.started_at_ms - clock.now_ms
        if ahead_ms > clock.future_tolerance_ms:
            return Rejection(
                "future_timestamp",
                f"started_at is {ahead_ms // 1000} s in the future "
                f"(tolerance {clock.future_tolerance_ms // 1000} s)",
            )
        period = period_of(cdr.started_at_ms, sub.billing_anchor_day)
        if clock.now_ms > period.end_ms + clock.grace_ms:
            return Rejection(
                "period_closed",
                f"period {period.name} closed for late CDRs at "
                f"{format_ms(period.end_ms + clock.grace_ms)}",
            )
        month = start_month(cdr.started_at_ms)
        seen = None
        for candidate in (month, month - 1, month + 1):
            seen = self.rated.get((cdr.subscription_id, cdr.call_id, candidate))
            if seen is not None:
                break
        if seen is not None:
            seen_fingerprint, seen_rating = seen
            if seen_fingerprint != fingerprint:
                return Rejection(
                    "conflicting_duplicate",
                    f"call_id {cdr.call_id!r} was already rated with different content",
                )
            return _replayed(seen_rating)
        rating = self._rate_new(cdr, sub, period.name, rated_at_ms)
        rating.session = self.sessions.close_by_cdr(cdr.subscription_id, cdr.call_id,
                                                    clock.now_ms)
        self.rated[(cdr.subscription_id, cdr.call_id, month)] = (fingerprint, rating)
        return rating

    def _rate_new(self, cdr: Cdr, sub: Subscription, period: str, rated_at_ms: int) -> CallRating:
        billable = billable_seconds(cdr.duration_s, sub.plan.billing_increment)
        if cdr.is_free:
            return _free_rating(sub, period, billable, rated_at_ms)
        pool = sub.included_s(cdr.zone)
        counters = self.zone(cdr.subscription_id, period, cdr.zone)
        split = split_call(billable, pool, counters.used_included_s, sub.payg_enabled)
        counters.used_included_s += split.included_s
        counters.overage_s += split.overage_s
        counters.unbilled_s += split.unbilled_s
        amount_micro = 0
        rate = None
        if split.overage_s > 0:
            rate_per_minute = sub.plan.payg_rate_per_minute[cdr.zone]
            amount_micro = to_micro(overage_amount(split.overage_s, rate_per_minute))
            counters.overage_micro += amount_micro
            rate = str(rate_per_minute)
            spent_key = (cdr.subscription_id, period, cdr.user_id)
            self.user_amounts[spent_key] = self.user_amounts.get(spent_key, 0) + amount_micro
        user_key = (cdr.subscription_id, period, cdr.user_id, cdr.zone)
        self.user_seconds[user_key] = self.user_seconds.get(user_key, 0) + billable
        alerts = []
        for threshold in thresholds_reached(counters.used_included_s, pool):
            flag = (cdr.subscription_id, period, cdr.zone, threshold)
            if flag not in self.alerted:
                self.alerted.add(flag)
                alerts.append(
                    AlertCrossing(
                        cdr.zone, period, threshold, counters.used_included_s, pool, rated_at_ms
                    )
                )
        return CallRating(
            period=period,
            billable_s=billable,
            included_s=split.included_s,
            overage_s=split.overage_s,
            unbilled_s=split.unbilled_s,
            outcome=split.outcome,
            amount_micro=amount_micro,
            rate_per_minute=rate,
            rated_at_ms=rated_at_ms,
            billing_account_id=sub.billing_account_id,
            currency=sub.currency,
            alerts=tuple(alerts),
        )


def start_month(started_at_ms: int) -> int:
    """Months since year 0 of the call's UTC start: the dedupe memory's bucket.

    A call_id is recognised as already rated when the earlier CDR started in the same
    calendar month or the month either side; ids further apart are different calls.
    """
    day = from_ms(started_at_ms)
    return day.year * 12 + day.month - 1


def _free_rating(sub: Subscription, period: str, billable: int, rated_at_ms: int) -> CallRating:
    return CallRating(
        period=period,
        billable_s=billable,
        included_s=0,
        overage_s=0,
        unbilled_s=0,
        outcome=FREE.outcome,
        amount_micro=0,
        rate_per_minute=None,
        rated_at_ms=rated_at_ms,
        billing_account_id=sub.billing_account_id,
        currency=sub.currency,
    )


def _replayed(rating: CallRating) -> CallRating:
    return replace(rating, replayed=True, session="")


def _with_payg(sub: Subscription, enabled: bool) -> Subscription:
    return replace(sub, payg_enabled=enabled)
