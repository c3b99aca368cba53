"""The output records of SPEC §4 (field names are the contract), built from a rating."""

from __future__ import annotations

from typing import Any

from rater.rating.clock import format_ms
from rater.rating.ids import alert_id, charge_id
from rater.rating.money import format_micro
from rater.rating.results import AlertCrossing, CallRating
from rater.records import Cdr

Record = dict[str, Any]


def call_records(cdr: Cdr, rating: CallRating) -> tuple[Record, Record | None]:
    """The rated call and, when it has overage, its charge: built together because they
    share the charge id, the amount and both timestamps (one of each per call)."""
    started_at = format_ms(cdr.started_at_ms)
    rated_at = format_ms(rating.rated_at_ms)
    charged = rating.overage_s > 0
    the_charge_id = charge_id(cdr.subscription_id, cdr.call_id) if charged else None
    amount = format_micro(rating.amount_micro) if charged else "0"
    rated = {
        "call_id": cdr.call_id,
        "subscription_id": cdr.subscription_id,
        "billing_account_id": rating.billing_account_id,
        "user_id": cdr.user_id,
        "started_at": started_at,
        "period": rating.period,
        "zone": cdr.zone,
        "direction": cdr.direction,
        "emergency": cdr.emergency,
        "duration_s": cdr.duration_s,
        "billable_s": rating.billable_s,
        "included_s": rating.included_s,
        "overage_s": rating.overage_s,
        "unbilled_s": rating.unbilled_s,
        "outcome": rating.outcome,
        "amount": amount,
        "currency": rating.currency,
        "charge_id": the_charge_id,
        "rated_at": rated_at,
    }
    if not charged:
        return rated, None
    return rated, {
        "charge_id": the_charge_id,
        "subscription_id": cdr.subscription_id,
        "billing_account_id": rating.billing_account_id,
        "user_id": cdr.user_id,
        "call_id": cdr.call_id,
        "period": rating.period,
        "zone": cdr.zone,
        "overage_s": rating.overage_s,
        "rate_per_minute": rating.rate_per_minute,
        "amount": amount,
        "currency": rating.currency,
        "started_at": started_at,
        "rated_at": rated_at,
    }


def rated_call(cdr: Cdr, rating: CallRating) -> Record:
    return call_records(cdr, rating)[0]


def overage_charge(cdr: Cdr, rating: CallRating) -> Record | None:
    return call_records(cdr, rating)[1]


def threshold_alert(subscription_id: str, crossing: AlertCrossing) -> Record:
    return {
        "alert_id": alert_id(subscription_id, crossing.zone, crossing.period, crossing.threshold),
        "subscription_id": subscription_id,
        "zone": crossing.zone,
        "period": crossing.period,
        "threshold": crossing.threshold,
        "used_included_s": crossing.used_included_s,
        "included_s": crossing.included_s,
        "at": format_ms(crossing.at_ms),
    }
