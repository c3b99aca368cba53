"""Shared test builders: typed records and their JSON documents, with keyword defaults.

Defaults describe one ordinary subscription: `sub-1` on billing account `ba-1`,
one licence of 10 domestic / 5 international minutes, PAYG rates 0.025 / 0.10
EUR per minute, increment 60/60, anchor day 1, PAYG off. CDRs default to a
60 s outbound domestic call by `user-1` on 2026-01-15 12:00 UTC.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from decimal import Decimal
from typing import Any

from rater.rating.results import ZoneCounters
from rater.records import CallAttempt, Cdr, Increment, Plan, Subscription, Zone
from rater.store import SubscriptionSnapshot

DEFAULT_STARTED_AT = "2026-01-15T12:00:00Z"


def ms(text: str) -> int:
    """RFC 3339 text -> ms since the epoch, computed independently of `rater.rating.clock`."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def subscription_doc(
    *,
    subscription_id: str = "sub-1",
    billing_account_id: str = "ba-1",
    licenses: int = 1,
    domestic_minutes: int = 10,
    international_minutes: int = 5,
    domestic_rate: str = "0.025",
    international_rate: str = "0.10",
    increment: str = "60/60",
    anchor_day: int = 1,
    payg: bool = False,
    currency: str = "EUR",
) -> dict[str, Any]:
    """A Subscription as JSON (SPEC §4), e.g. for the codec or `subscription.upserted`."""
    return {
        "subscription_id": subscription_id,
        "billing_account_id": billing_account_id,
        "licenses": licenses,
        "payg_enabled": payg,
        "billing_anchor_day": anchor_day,
        "currency": currency,
        "plan": {
            "included_minutes_per_license": {
                "domestic": domestic_minutes,
                "international": international_minutes,
            },
            "payg_rate_per_minute": {
                "domestic": domestic_rate,
                "international": international_rate,
            },
            "billing_increment": increment,
        },
    }


def make_subscription(
    *,
    subscription_id: str = "sub-1",
    billing_account_id: str = "ba-1",
    licenses: int = 1,
    domestic_minutes: int = 10,
    international_minutes: int = 5,
    domestic_rate: str = "0.025",
    international_rate: str = "0.10",
    increment: str = "60/60",
    anchor_day: int = 1,
    payg: bool = False,
    currency: str = "EUR",
) -> Subscription:
    """A typed Subscription built directly (no codec), so rating tests don't depend on it."""
    minutes: dict[Zone, int] = {
        "domestic": domestic_minutes,
        "international": international_minutes,
    }
    rates: dict[Zone, Decimal] = {
        "domestic": Decimal(domestic_rate),
        "international": Decimal(international_rate),
    }
    return Subscription(
        subscription_id=subscription_id,
        billing_account_id=billing_account_id,
        licenses=licenses,
        payg_enabled=payg,
        billing_anchor_day=anchor_day,
        currency=currency,
        plan=Plan(minutes, rates, Increment.parse(increment)),
    )


def cdr_doc(
    *,
    call_id: str = "call-1",
    subscription_id: str = "sub-1",
    user_id: str = "user-1",
    started_at: str = DEFAULT_STARTED_AT,
    duration_s: int = 60,
    direction: str = "outbound",
    zone: str = "domestic",
    emergency: bool | None = None,
    destination: str | None = None,
) -> dict[str, Any]:
    """A CDR as JSON (SPEC §4); optional fields are left out unless given."""
    doc: dict[str, Any] = {
        "call_id": call_id,
        "subscription_id": subscription_id,
        "user_id": user_id,
        "started_at": started_at,
        "duration_s": duration_s,
        "direction": direction,
        "zone": zone,
    }
    if emergency is not None:
        doc["emergency"] = emergency
    if destination is not None:
        doc["destination"] = destination
    return doc


def make_cdr(
    *,
    call_id: str = "call-1",
    subscription_id: str = "sub-1",
    user_id: str = "user-1",
    started_at: str | int = DEFAULT_STARTED_AT,
    duration_s: int = 60,
    direction: str = "outbound",
    zone: str = "domestic",
    emergency: bool = False,
    destination: str | None = None,
) -> Cdr:
    """A typed CDR; `started_at` is RFC 3339 text or ms since the epoch."""
    started_at_ms = ms(started_at) if isinstance(started_at, str) else started_at
    return Cdr(
        call_id=call_id,
        subscription_id=subscription_id,
        user_id=user_id,
        started_at_ms=started_at_ms,
        duration_s=duration_s,
        direction=direction,  # type: ignore[arg-type]
        zone=zone,  # type: ignore[arg-type]
        emergency=emergency,
        destination=destination,
    )


def attempt_doc(
    *,
    attempt_id: str = "att-1",
    subscription_id: str = "sub-1",
    user_id: str = "user-1",
    direction: str = "outbound",
    zone: str = "domestic",
    emergency: bool | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "attempt_id": attempt_id,
        "subscription_id": subscription_id,
        "user_id": user_id,
        "direction": direction,
        "zone": zone,
    }
    if emergency is not None:
        doc["emergency"] = emergency
    if at is not None:
        doc["at"] = at
    return doc


def make_attempt(
    *,
    attempt_id: str = "att-1",
    subscription_id: str = "sub-1",
    user_id: str = "user-1",
    direction: str = "outbound",
    zone: str = "domestic",
    emergency: bool = False,
    at: str | int | None = None,
) -> CallAttempt:
    at_ms = ms(at) if isinstance(at, str) else at
    return CallAttempt(
        attempt_id=attempt_id,
        subscription_id=subscription_id,
        user_id=user_id,
        direction=direction,  # type: ignore[arg-type]
        zone=zone,  # type: ignore[arg-type]
        emergency=emergency,
        at_ms=at_ms,
    )


def make_snapshot(
    *, payg: bool = False, used: int = 0, overage_s: int = 0, unbilled_s: int = 0,
    overage_micro: int = 0, licenses: int = 1, minutes: int = 2, intl_minutes: int = 0,
    reserved: int = 0,
) -> SubscriptionSnapshot:
    return SubscriptionSnapshot(
        subscription_id="sub-1", billing_account_id="ba-1", currency="EUR", licenses=licenses,
        payg_enabled=payg, billing_anchor_day=1, increment=Increment(60, 60),
        included_minutes={"domestic": minutes, "international": intl_minutes},
        period="2026-11-01", period_end_ms=1_796_083_200_000,
        zones={"domestic": ZoneCounters(used, overage_s, unbilled_s, overage_micro, reserved),
               "international": ZoneCounters()},
    )
