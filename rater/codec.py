"""Bytes <-> records: JSON decoding validated by the compiled schemas of `schemas/`.

Every decoder raises `InvalidRecord` with a human-readable detail; callers turn
that into a dead letter with reason `invalid` (SPEC §5.10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from rater.rating.clock import to_ms
from rater.records import (
    CallAttempt,
    Cdr,
    Increment,
    PaygChange,
    Plan,
    Subscription,
)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
if not SCHEMA_DIR.is_dir():  # installed as a wheel: schemas ship as package data
    SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

dumps = orjson.dumps
MIN_YEAR, MAX_YEAR = 1970, 9998  # accepted years of any timestamp, in UTC


class InvalidRecord(ValueError):
    """The input is not a valid record; `str(exc)` is the dead letter's detail."""


@cache
def load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())
    return loaded


@cache
def validator(name: str) -> Callable[[Any], Any]:
    schema = load_schema(name)
    handlers = {"": lambda uri: load_schema(uri.removesuffix(".schema.json"))}
    compiled: Callable[[Any], Any] = fastjsonschema.compile(
        schema, handlers=handlers, use_default=True, use_formats=False
    )
    return compiled


def parse_json(raw: bytes, max_bytes: int) -> Any:
    if len(raw) > max_bytes:
        raise InvalidRecord(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None


def validate(name: str, document: Any) -> dict[str, Any]:
    try:
        checked: dict[str, Any] = validator(name)(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidRecord(f"{exc.message}") from None
    except (RecursionError, TypeError, ValueError) as exc:
        raise InvalidRecord(f"not a {name} record: {type(exc).__name__}") from None
    return checked


def parse_timestamp(text: str, field: str) -> int:
    """RFC 3339 with offset -> ms since the epoch (sub-millisecond digits are dropped)."""
    head, dot, rest = text.partition(".")
    if dot:  # fromisoformat takes at most 6 fractional digits; RFC 3339 allows more
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:digits][:6] + rest[digits:]
        text = f"{head}.{rest}"
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidRecord(f"{field}: not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidRecord(f"{field}: timestamp needs a UTC offset: {text!r}")
    try:  # 0001-01-01T00:00:00+01:00 is before datetime.min once in UTC
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    # Billing-period arithmetic steps a month either side, so keep clear of date's limits.
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise InvalidRecord(
            f"{field}: timestamp out of range ({MIN_YEAR}..{MAX_YEAR} UTC): {text!r}"
        )
    return to_ms(utc)


def _int(value: Any) -> int:
    """JSON Schema's "integer" admits 61.0 and 1e2; the rater only ever sees a real int."""
    return int(value)


def decode_cdr(raw: bytes, max_bytes: int = 65_536) -> Cdr:
    doc = validate("cdr", parse_json(raw, max_bytes))
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


def subscription_to_document(sub: Subscription) -> dict[str, Any]:
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


def decode_subscription_event(raw: bytes, max_bytes: int = 65_536) -> Subscription | PaygChange:
    doc = validate("subscription_event", parse_json(raw, max_bytes))
    if doc["type"] == "subscription.upserted":
        return subscription_from_document(doc["subscription"])
    return PaygChange(
        subscription_id=doc["subscription_id"],
        enabled=doc["enabled"],
        previous=doc.get("previous"),
        actor=doc.get("actor"),
        role=doc.get("role"),
        at=doc.get("at"),
        revision=doc.get("revision"),
    )
