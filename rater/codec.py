"""Bytes <-> records: JSON decoding validated by the compiled schemas of `schemas/`.

Every decoder raises `InvalidRecord` with a human-readable detail; callers turn
that into a dead letter with reason `invalid` (SPEC §5.10).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
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


_TIMESTAMP_FAST = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


# "YYYY-MM-DDTHH:MM:SS" -> its ms: the CDRs of a batch share few seconds; bounded
_SECOND_MS: dict[str, int] = {}
_SECOND_MS_MAX = 65_536


def _timestamp_fast(text: str) -> int | None:
    """`parse_timestamp` for the plain `YYYY-MM-DDTHH:MM:SS[.fff]Z` shape, in integers;
    None whenever the text is anything else (or out of range), for the full parser."""
    second_ms = _SECOND_MS.get(text[:19])
    if second_ms is None:
        return _timestamp_parsed(text)
    tail = text[19:]  # the cached head was a valid second: check only what follows it
    if tail == "Z":
        return second_ms
    digits = tail[1:-1]
    if (tail[:1] == "." and tail[-1:] == "Z" and 1 <= len(digits) <= 9
            and digits.isascii() and digits.isdigit()):
        return second_ms + int(digits[:3].ljust(3, "0"))
    return None


def _timestamp_parsed(text: str) -> int | None:
    match = _TIMESTAMP_FAST.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    y = int(year)
    h, mi, sec = int(hour), int(minute), int(second)
    if not MIN_YEAR <= y <= MAX_YEAR or h > 23 or mi > 59 or sec > 59:
        return None
    try:
        days = date(y, int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    second_ms = (((days * 24 + h) * 60 + mi) * 60 + sec) * 1000
    if len(_SECOND_MS) >= _SECOND_MS_MAX:
        _SECOND_MS.clear()
    _SECOND_MS[text[:19]] = second_ms
    return second_ms + (int(fraction[:3].ljust(3, "0")) if fraction else 0)


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
        """Everything but started_at's pattern: `_timestamp_fast` accepts a subset of it."""
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
    started_ms = _timestamp_fast(doc["started_at"]) if _cdr_shape().matches(doc) else None
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
