"""Every output record of SPEC §4 (field names are the contract), and the subscription
events the rater itself publishes: rated call and charge, threshold alert, decision,
session answer (§11), dead letter, `payg.changed`, `spend_limit.changed` (§14),
`subscription.upserted`, and the adjustment of a rerate (§13). Plain dicts, ready for
orjson."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from rater.rating.clock import format_ms
from rater.rating.decision import Decision
from rater.rating.ids import alert_id, charge_id, uuid5_url
from rater.rating.money import format_micro, format_signed_micro
from rater.rating.results import AlertCrossing, CallRating
from rater.rating.sessions import SessionAnswer
from rater.records.shapes import CallAttempt, Cdr, Subscription

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
        "destination": cdr.destination,  # SPEC §12: for the usage report
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


def decision_record(attempt: CallAttempt, decision: Decision, decided_at_ms: int) -> Record:
    return {
        "attempt_id": attempt.attempt_id,
        "subscription_id": attempt.subscription_id,
        "decision": decision.decision,
        "max_duration_s": decision.max_duration_s,
        "reason": decision.reason,
        "decided_at": format_ms(decided_at_ms),
    }


def session_answer(session_id: str, subscription_id: str, answer: SessionAnswer) -> Record:
    """The answer to a session request (SPEC §11); a retry gets the same values again."""
    return {
        "session_id": session_id,
        "subscription_id": subscription_id,
        "decision": answer.decision,
        "granted_s": answer.granted_s,
        "final": answer.final,
        "validity_s": answer.validity_s,
        "reason": answer.reason,
        "expires_at": format_ms(answer.expires_at_ms),
    }


# A dead letter carries at most this much of the original value (and key): a 1 MB
# poison record, escaped or base64-encoded, would make a dead letter the broker refuses
# (MessageSizeTooLarge), and the batch would retry forever: a stalled partition.
MAX_DEAD_LETTER_BYTES = 65_536


def dead_letter_record(
    reason: str, detail: str, source_topic: str, partition: int | None, offset: int | None,
    key: bytes | None, value: bytes, at_ms: int,
) -> Record:
    """The original bytes (text, or base64 when they are not UTF-8) and why they were refused."""
    text, encoding = _text_or_base64(value)
    letter: Record = {
        "reason": reason,
        "detail": detail,
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key": _text_or_base64(key)[0] if key is not None else None,
        "value": text,
        "value_encoding": encoding,
        "at": format_ms(at_ms),
    }
    if len(value) > MAX_DEAD_LETTER_BYTES or len(key or b"") > MAX_DEAD_LETTER_BYTES:
        letter["truncated"] = True  # value and key: their first MAX_DEAD_LETTER_BYTES
        letter["value_bytes"] = len(value)
    return letter


def _text_or_base64(raw: bytes, limit: int = MAX_DEAD_LETTER_BYTES) -> tuple[str, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw[:limit]).decode("ascii"), "base64"
    if len(raw) > limit:  # whole characters only
        text = raw[:limit].decode("utf-8", "ignore")
    return text, "utf-8"


def payg_changed(
    subscription_id: str, enabled: bool, previous: bool, revision: int, actor: str, role: str,
    at_ms: int,
) -> Record:
    """The audit event of a PAYG switch (SPEC §4, §7); `revision` orders switches."""
    return {
        "type": "payg.changed",
        "subscription_id": subscription_id,
        "enabled": enabled,
        "previous": previous,
        "revision": revision,
        "actor": actor,
        "role": role,
        "at": format_ms(at_ms),
    }


def spend_limit_text(limit_micro: int | None) -> str | None:
    """A limit on the wire: six decimal places, like every amount; None: no limit."""
    return None if limit_micro is None else format_micro(limit_micro)


def spend_limit_changed(
    subscription_id: str, user_id: str, limit_micro: int | None, previous_micro: int | None,
    revision: int, actor: str, role: str, at_ms: int,
) -> Record:
    """The audit event of a user's spend limit change (SPEC §14), like `payg_changed`."""
    return {
        "type": "spend_limit.changed",
        "subscription_id": subscription_id,
        "user_id": user_id,
        "amount": spend_limit_text(limit_micro),
        "previous": spend_limit_text(previous_micro),
        "revision": revision,
        "actor": actor,
        "role": role,
        "at": format_ms(at_ms),
    }


def subscription_document(sub: Subscription) -> Record:
    """A Subscription as SPEC §4 writes it (rates as decimal strings)."""
    return {
        "subscription_id": sub.subscription_id,
        "billing_account_id": sub.billing_account_id,
        "licenses": sub.licenses,
        "payg_enabled": sub.payg_enabled,
        "billing_anchor_day": sub.billing_anchor_day,
        "currency": sub.currency,
        "plan": {
            "included_minutes_per_license": dict(sub.plan.included_minutes_per_license),
            "payg_rate_per_minute": {
                zone: str(rate) for zone, rate in sub.plan.payg_rate_per_minute.items()
            },
            "billing_increment": str(sub.plan.billing_increment),
        },
    }


def subscription_upserted(sub: Subscription, at_ms: int) -> Record:
    return {"type": "subscription.upserted", "subscription": subscription_document(sub),
            "at": format_ms(at_ms)}


def adjustment(rerate_id: str, call: Mapping[str, Any], original_micro: int, new_micro: int,
               reason: str, at_ms: int) -> Record:
    """SPEC §13: a call's charge as a rerate changes it; `call` is its rated-call record."""
    return {
        "adjustment_id": uuid5_url(f"{rerate_id}/{call['call_id']}"),
        "rerate_id": rerate_id,
        "call_id": call["call_id"],
        "subscription_id": call["subscription_id"],
        "billing_account_id": call["billing_account_id"],
        "period": call["period"],
        "original_charge_id": call["charge_id"],
        "original_amount": format_micro(original_micro),
        "new_amount": format_micro(new_micro),
        "delta": format_signed_micro(new_micro - original_micro),
        "currency": call["currency"],
        "reason": reason,
        "at": format_ms(at_ms),
    }
