"""Bytes -> input records, validated by the compiled schemas of `schemas/`.

Every decoder raises `InvalidRecord` with a human-readable detail; callers turn
that into a dead letter with reason `invalid` (SPEC §5.10).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from functools import cache
from typing import Any

from rater.rating.money import to_micro
from rater.records.schemas import parse_json, validate, validator
from rater.records.shapes import (
    CallAttempt,
    Cdr,
    Increment,
    PaygChange,
    Plan,
    SessionInitial,
    SessionTerminate,
    SessionUpdate,
    SpendLimitChange,
    Subscription,
)
from rater.records.timestamps import parse_timestamp, timestamp_fast


def _int(value: Any) -> int:
    """JSON Schema's "integer" admits 61.0 and 1e2; the rater only ever sees a real int."""
    return int(value)


VALID_SUBSCRIPTIONS_KEPT = 100_000


class _CdrShape:
    """A typed check of the CDR schema's common case, built from the compiled validator's
    own patterns. It accepts only documents that `schemas/cdr.schema.json` accepts (a
    subset: exact ints, no defaults to fill in beyond `emergency`); everything else goes
    through the compiled validator, so the details of InvalidRecord never change."""

    REQUIRED = frozenset(("call_id", "subscription_id", "user_id", "started_at",
                          "duration_s", "direction", "zone"))
    ALLOWED = REQUIRED | {"emergency", "destination"}

    def __init__(self) -> None:
        patterns = getattr(validator("cdr"), "__globals__", {}).get("REGEX_PATTERNS", {})
        self.subscription = patterns.get(r"^[^{}\s]+$")
        self.started = patterns.get(
            r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
        self.destination = patterns.get(r"^\+[1-9]\d{1,14}$")
        self.usable = None not in (self.subscription, self.started, self.destination)
        self._valid_subscriptions: set[str] = set()

    def matches(self, doc: Any) -> bool:
        """Everything but started_at's pattern: `timestamp_fast` accepts a subset of it."""
        if not self.usable or type(doc) is not dict:
            return False
        try:
            call_id, sub, user = doc["call_id"], doc["subscription_id"], doc["user_id"]
            started, duration = doc["started_at"], doc["duration_s"]
            direction, zone = doc["direction"], doc["zone"]
        except KeyError:
            return False
        emergency = doc.get("emergency", False)
        destination = doc.get("destination")
        if len(doc) != 7 + ("emergency" in doc) + ("destination" in doc):
            return False  # a field the schema does not allow
        return (
            type(call_id) is str and 1 <= len(call_id) <= 128
            and type(sub) is str and self._subscription_ok(sub)
            and type(user) is str and 1 <= len(user) <= 128
            and type(started) is str and 20 <= len(started) <= 40
            and type(duration) is int and 0 <= duration <= 86_400
            and (direction == "outbound" or direction == "inbound") and type(direction) is str
            and (zone == "domestic" or zone == "international") and type(zone) is str
            and type(emergency) is bool
            and (destination is None or (type(destination) is str
                                         and self.destination.search(destination) is not None))
        )

    def _subscription_ok(self, sub: str) -> bool:
        # a worker sees the same subscriptions over and over: remember the valid ids
        if sub in self._valid_subscriptions:
            return True
        if not (1 <= len(sub) <= 128 and self.subscription.search(sub) is not None):
            return False
        if len(self._valid_subscriptions) >= VALID_SUBSCRIPTIONS_KEPT:
            self._valid_subscriptions.clear()
        self._valid_subscriptions.add(sub)
        return True


@cache
def _cdr_shape() -> _CdrShape:
    return _CdrShape()


def decode_cdr(raw: bytes, max_bytes: int = 65_536) -> Cdr:
    doc = parse_json(raw, max_bytes)
    # the common case, checked in Python; the compiled schema below for everything else
    started_ms = timestamp_fast(doc["started_at"]) if _cdr_shape().matches(doc) else None
    if started_ms is not None:  # the schema holds; same record as the slow path below
        return Cdr(
            call_id=doc["call_id"],
            subscription_id=doc["subscription_id"],
            user_id=doc["user_id"],
            started_at_ms=started_ms,
            duration_s=doc["duration_s"],
            direction=doc["direction"],
            zone=doc["zone"],
            emergency=doc.get("emergency", False),
            destination=doc.get("destination"),
        )
    doc = validate("cdr", doc)
    return Cdr(
        call_id=doc["call_id"],
        subscription_id=doc["subscription_id"],
        user_id=doc["user_id"],
        started_at_ms=parse_timestamp(doc["started_at"], "started_at"),
        duration_s=_int(doc["duration_s"]),
        direction=doc["direction"],
        zone=doc["zone"],
        emergency=doc.get("emergency", False),
        destination=doc.get("destination"),
    )


def cdr_fingerprint(cdr: Cdr) -> str:
    """Identifies a CDR's content, so a reused call_id with other content is caught (§5.8)."""
    canonical = (
        f"{cdr.user_id}\x1f{cdr.started_at_ms}\x1f{cdr.duration_s}\x1f{cdr.direction}"
        f"\x1f{cdr.zone}\x1f{int(cdr.emergency)}\x1f{cdr.destination or ''}"
    )
    return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()


def decode_attempt(raw: bytes, max_bytes: int = 65_536) -> CallAttempt:
    return attempt_from_document(parse_json(raw, max_bytes))


def attempt_from_document(document: Any) -> CallAttempt:
    doc = validate("call_attempt", document)
    at = doc.get("at")
    return CallAttempt(
        attempt_id=doc["attempt_id"],
        subscription_id=doc["subscription_id"],
        user_id=doc["user_id"],
        direction=doc["direction"],
        zone=doc["zone"],
        emergency=doc.get("emergency", False),
        at_ms=parse_timestamp(at, "at") if at is not None else None,
    )


def subscription_from_document(document: Any) -> Subscription:
    doc = validate("subscription", document)
    plan = doc["plan"]
    return Subscription(
        subscription_id=doc["subscription_id"],
        billing_account_id=doc["billing_account_id"],
        licenses=_int(doc["licenses"]),
        payg_enabled=doc.get("payg_enabled", False),
        billing_anchor_day=_int(doc["billing_anchor_day"]),
        currency=doc["currency"],
        plan=Plan(
            included_minutes_per_license={
                zone: _int(minutes)
                for zone, minutes in plan["included_minutes_per_license"].items()
            },
            payg_rate_per_minute={
                zone: Decimal(rate) for zone, rate in plan["payg_rate_per_minute"].items()
            },
            billing_increment=Increment.parse(plan["billing_increment"]),
        ),
    )


SubscriptionEvent = Subscription | PaygChange | SpendLimitChange


def decode_subscription_event(raw: bytes, max_bytes: int = 65_536) -> SubscriptionEvent:
    doc = validate("subscription_event", parse_json(raw, max_bytes))
    if doc["type"] == "subscription.upserted":
        return subscription_from_document(doc["subscription"])
    if doc["type"] == "spend_limit.changed":
        return SpendLimitChange(
            subscription_id=doc["subscription_id"],
            user_id=doc["user_id"],
            limit_micro=spend_limit_micro(doc["amount"]),
            previous_micro=spend_limit_micro(doc.get("previous")),
            actor=doc.get("actor"),
            role=doc.get("role"),
            at=doc.get("at"),
            revision=doc.get("revision"),
        )
    return PaygChange(
        subscription_id=doc["subscription_id"],
        enabled=doc["enabled"],
        previous=doc.get("previous"),
        actor=doc.get("actor"),
        role=doc.get("role"),
        at=doc.get("at"),
        revision=doc.get("revision"),
    )


def spend_limit_micro(amount: str | None) -> int | None:
    """A limit as `schemas/spend_limit_amount.schema.json` admits it (at most 6 decimal
    places, so exact) in micro-units; None stays None (no limit)."""
    return None if amount is None else to_micro(Decimal(amount))


def spend_limit_from_document(document: Any) -> int | None:
    """The body of `PUT …/users/{user_id}/spend-limit`: `{"amount": "5.00" | null}`."""
    return spend_limit_micro(validate("spend_limit_request", document)["amount"])


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def session_initial_from_document(document: Any, default_requested_s: int) -> SessionInitial:
    doc = validate("session_initial", document)
    return SessionInitial(
        session_id=doc["session_id"],
        subscription_id=doc["subscription_id"],
        user_id=doc["user_id"],
        direction=doc["direction"],
        zone=doc["zone"],
        emergency=doc.get("emergency", False),
        requested_s=_int(doc.get("requested_s", default_requested_s)),
        request_number=_optional_int(doc.get("request_number")),
    )


def session_update_from_document(document: Any, default_requested_s: int) -> SessionUpdate:
    doc = validate("session_update", document)
    return SessionUpdate(
        used_s=_int(doc["used_s"]),
        requested_s=_int(doc.get("requested_s", default_requested_s)),
        request_number=_optional_int(doc.get("request_number")),
        subscription_id=doc.get("subscription_id"),
    )


def session_terminate_from_document(document: Any) -> SessionTerminate:
    doc = validate("session_terminate", document)
    return SessionTerminate(
        used_s=_int(doc["used_s"]),
        request_number=_optional_int(doc.get("request_number")),
        subscription_id=doc.get("subscription_id"),
    )
