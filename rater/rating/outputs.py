"""The output records of SPEC §4 (field names are the contract), built from a rating."""

from __future__ import annotations

from typing import Any

from rater.rating.clock import format_ms
from rater.rating.ids import alert_id, charge_id
from rater.rating.money import format_micro
from rater.rating.results import AlertCrossing, CallRating
from rater.records import Cdr

Record = dict[str, Any]


def rated_call(cdr: Cdr, rating: CallRating) -> Record:
    return {
        "call_id": cdr.call_id,
        "subscription_id": cdr.subscription_id,
        "billing_account_id": rating.billing_account_id,
        "user_id": cdr.user_id,
        "started_at": format_ms(cdr.started_at_ms),
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
        "amount": format_micro(rating.amount_micro) if rating.overage_s else "0",
        "currency": rating.currency,
        "charge_id": charge_id(cdr.subscription_id, cdr.call_id) if rating.overage_s else None,
        "rated_at": format_ms(rating.rated_at_ms),
    }


def overage_charge(cdr: Cdr, rating: CallRating) -> Record | None:
    if rating.overage_s <= 0:
        return None
    return {
        "charge_id": charge_id(cdr.subscription_id, cdr.call_id),
        "subscription_id": cdr.subscription_id,
        "billing_account_id": rating.billing_account_id,
        "user_id": cdr.user_id,
        "call_id": cdr.call_id,
        "period": rating.period,
        "zone": cdr.zone,
        "overage_s": rating.overage_s,
        "rate_per_minute": rating.rate_per_minute,
        "amount": format_micro(rating.amount_micro),
        "currency": rating.currency,
        "started_at": format_ms(cdr.started_at_ms),
        "rated_at": format_ms(rating.rated_at_ms),
    }


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
