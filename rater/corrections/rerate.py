"""Re-rating a period with a corrected plan (SPEC §13), pure: no I/O.

The calls come from the call history (their rated-call records as emitted), in
`started_at` order. Each subscription's calls are rated afresh by the reference model
(`rater.rating.model.ReferenceRater`: the §5 rules as the live path states them) with
the corrected plan, from empty counters. Whether PAYG was on for a call is what it was
when the call was first rated: the original record says so when the call went past
the pool (overage: on; unbilled: off); otherwise the subscription's PAYG audit trail
at the call's `rated_at`; otherwise the corrected plan's flag.

The result is, per call whose charge changes, an adjustment record, and per
subscription the change to its period counters (`CounterDeltas`): the rerated totals
minus the original ones of the same calls. The store applies the deltas, so the
contributions of calls rated after the rerate's cutoff stay as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rater.rating.clock import RatingClock
from rater.rating.ids import uuid5_url
from rater.rating.model import ReferenceRater
from rater.rating.money import format_micro, to_micro
from rater.rating.outputs import adjustment
from rater.rating.results import CallRating, Rejection, ZoneCounters
from rater.records import Cdr, Subscription, Zone, parse_timestamp

# every call of a period is inside the period and before "now" for the model's clock
_FOREVER_MS = 100 * 366 * 86_400_000


@dataclass(frozen=True, slots=True)
class PaygChangeAt:
    at_ms: int
    enabled: bool


@dataclass(slots=True)
class CounterDeltas:
    """What a rerate changes in one subscription's period counters, per zone and per user
    (billable seconds, and the overage amount a spend limit weighs: SPEC §14); `totals`
    are the rerated counters of the calls rerated (used where the counters are gone, e.g.
    a period whose keys have expired)."""

    zones: dict[Zone, ZoneCounters] = field(default_factory=dict)
    totals: dict[Zone, ZoneCounters] = field(default_factory=dict)
    user_seconds: dict[tuple[str, Zone], int] = field(default_factory=dict)
    user_totals: dict[tuple[str, Zone], int] = field(default_factory=dict)
    user_amounts: dict[str, int] = field(default_factory=dict)
    user_amount_totals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallDiff:
    """One call whose rating changes: what it was and what it becomes (for --dry-run)."""

    subscription_id: str
    call_id: str
    started_at: str
    zone: str
    before: tuple[int, int, int, str, str]  # billable, included, overage, outcome, amount
    after: tuple[int, int, int, str, str]


@dataclass(slots=True)
class Rerate:
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    deltas: dict[str, CounterDeltas] = field(default_factory=dict)
    diffs: list[CallDiff] = field(default_factory=list)
    calls: int = 0


def rerate_id_for(period: str, subscription_ids: Sequence[str], plan_digest: str,
                  reason: str) -> str:
    """The same correction asked twice is the same rerate (its adjustments, its deltas)."""
    return uuid5_url(f"rerate/{period}/{','.join(sorted(subscription_ids))}/{plan_digest}/"
                     f"{reason}")


def rerate(calls: Sequence[Mapping[str, Any]], plans: Mapping[str, Subscription],
           payg_changes: Mapping[str, Sequence[PaygChangeAt]], rerate_id: str, reason: str,
           at_ms: int) -> Rerate:
    """`calls`: rated-call records, every one of a subscription in `plans`; re-rated in
    (started_at, call_id) order per subscription; `payg_changes` oldest first."""
    result = Rerate()
    by_subscription: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for call in calls:
        by_subscription[call["subscription_id"]].append(call)
    for subscription_id, own in sorted(by_subscription.items()):
        own.sort(key=lambda c: (parse_timestamp(c["started_at"], "started_at"), c["call_id"]))
        deltas = result.deltas[subscription_id] = CounterDeltas()
        model = ReferenceRater()
        plan = plans[subscription_id]
        model.upsert(plan)
        for call in own:
            cdr = _cdr_of(call)
            model.set_payg(subscription_id, _payg_then(
                call, payg_changes.get(subscription_id, ()), plan.payg_enabled))
            rated = model.rate(cdr, call["call_id"], RatingClock(cdr.started_at_ms, _FOREVER_MS),
                               parse_timestamp(call["rated_at"], "rated_at"))
            if isinstance(rated, Rejection):  # cannot happen: each call once, inside its period
                raise ValueError(f"call {call['call_id']!r} refused on rerating: {rated.detail}")
            _count(deltas, call, rated)
            result.calls += 1
            original = to_micro(Decimal(call["amount"]))
            if rated.amount_micro != original:
                result.adjustments.append(adjustment(
                    rerate_id, call, original, rated.amount_micro, reason, at_ms))
            if _changed(call, rated):
                result.diffs.append(CallDiff(
                    subscription_id, call["call_id"], call["started_at"], call["zone"],
                    (call["billable_s"], call["included_s"], call["overage_s"],
                     call["outcome"], format_micro(original)),
                    (rated.billable_s, rated.included_s, rated.overage_s, rated.outcome,
                     format_micro(rated.amount_micro))))
    return result


def _cdr_of(call: Mapping[str, Any]) -> Cdr:
    return Cdr(call_id=call["call_id"], subscription_id=call["subscription_id"],
               user_id=call["user_id"],
               started_at_ms=parse_timestamp(call["started_at"], "started_at"),
               duration_s=int(call["duration_s"]), direction=call["direction"],
               zone=call["zone"], emergency=bool(call["emergency"]),
               destination=call.get("destination"))


def _payg_then(call: Mapping[str, Any], changes: Sequence[PaygChangeAt], plan_payg: bool) -> bool:
    if int(call["overage_s"]) > 0:
        return True
    if int(call["unbilled_s"]) > 0:
        return False
    rated_at = parse_timestamp(call["rated_at"], "rated_at")
    state = None
    for change in changes:
        if change.at_ms > rated_at:
            break
        state = change.enabled
    return plan_payg if state is None else state


def _changed(call: Mapping[str, Any], rated: CallRating) -> bool:
    return (int(call["billable_s"]), int(call["included_s"]), int(call["overage_s"]),
            int(call["unbilled_s"]), call["outcome"], to_micro(Decimal(call["amount"]))) != (
        rated.billable_s, rated.included_s, rated.overage_s, rated.unbilled_s, rated.outcome,
        rated.amount_micro)


def _count(deltas: CounterDeltas, call: Mapping[str, Any], rated: CallRating) -> None:
    """Add the call's new contribution and take away its original one (free calls touch
    no counter, as in the live path)."""
    zone: Zone = call["zone"]
    change = deltas.zones.setdefault(zone, ZoneCounters())
    total = deltas.totals.setdefault(zone, ZoneCounters())
    user = (call["user_id"], zone)
    if rated.outcome != "free":
        change.used_included_s += rated.included_s
        change.overage_s += rated.overage_s
        change.unbilled_s += rated.unbilled_s
        change.overage_micro += rated.amount_micro
        total.used_included_s += rated.included_s
        total.overage_s += rated.overage_s
        total.unbilled_s += rated.unbilled_s
        total.overage_micro += rated.amount_micro
        deltas.user_seconds[user] = deltas.user_seconds.get(user, 0) + rated.billable_s
        deltas.user_totals[user] = deltas.user_totals.get(user, 0) + rated.billable_s
        if rated.overage_s > 0:  # the live path counts a user's amount per overage call
            _add(deltas.user_amounts, call["user_id"], rated.amount_micro)
            _add(deltas.user_amount_totals, call["user_id"], rated.amount_micro)
    if call["outcome"] != "free":
        original = to_micro(Decimal(call["amount"]))
        change.used_included_s -= int(call["included_s"])
        change.overage_s -= int(call["overage_s"])
        change.unbilled_s -= int(call["unbilled_s"])
        change.overage_micro -= original
        deltas.user_seconds[user] = deltas.user_seconds.get(user, 0) - int(call["billable_s"])
        if int(call["overage_s"]) > 0:
            _add(deltas.user_amounts, call["user_id"], -original)


def _add(totals: dict[str, int], key: str, amount: int) -> None:
    totals[key] = totals.get(key, 0) + amount

