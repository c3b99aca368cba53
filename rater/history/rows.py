"""Topic records -> table rows, checked so that no row the database would refuse gets in.

A record that is not a valid rated call or charge raises `InvalidRecord` (the sink
dead-letters it). Beyond the JSON Schema, a row must fit its columns: ids of 1-128
characters (an index entry has a size limit), integers within PostgreSQL's
`integer`, no NUL character (PostgreSQL text cannot hold one), real dates and UUIDs.
Otherwise one poison record would fail its whole batch, again and again, and stall
its partition.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rater.history.partitions import month_of
from rater.rating.clock import from_ms
from rater.records import InvalidRecord, parse_json, parse_timestamp, validate

RATED_CALL_COLUMNS = (
    "period", "subscription_id", "call_id", "billing_account_id", "user_id", "started_at",
    "zone", "direction", "emergency", "duration_s", "billable_s", "included_s", "overage_s",
    "unbilled_s", "outcome", "amount", "currency", "charge_id", "rated_at", "destination",
    "record",
)
CHARGE_COLUMNS = (
    "period", "charge_id", "subscription_id", "billing_account_id", "user_id", "call_id",
    "zone", "overage_s", "rate_per_minute", "amount", "currency", "started_at", "rated_at",
    "record",
)
AUDIT_COLUMNS = (
    "dedupe_key", "subscription_id", "type", "at", "actor", "role", "record",
    "source_partition", "source_offset",
)
ADJUSTMENT_COLUMNS = (
    "adjustment_id", "rerate_id", "call_id", "subscription_id", "billing_account_id",
    "period", "original_charge_id", "original_amount", "new_amount", "delta", "currency",
    "reason", "at", "record",
)
COLUMNS = {"rated_calls": RATED_CALL_COLUMNS, "overage_charges": CHARGE_COLUMNS,
           "audit_events": AUDIT_COLUMNS, "adjustments": ADJUSTMENT_COLUMNS}
AUDITED_TYPES = frozenset({"payg.changed", "spend_limit.changed"})

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 1024
MAX_INTEGER = 2_147_483_647


@dataclass(frozen=True, slots=True)
class Row:
    """One row for `table`: `values` in the order of COLUMNS[table]."""

    table: str
    key: tuple[Any, ...]  # its primary key: of two rows with one key, the first stands
    month: date | None  # the partition it belongs to; None for an unpartitioned table
    values: tuple[Any, ...]


def _text(doc: dict[str, Any], name: str, limit: int = MAX_TEXT_CHARS) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise InvalidRecord(f"{name}: expected a string")
    if "\x00" in value:
        raise InvalidRecord(f"{name}: contains a NUL character")
    if len(value) > limit:
        raise InvalidRecord(f"{name}: longer than {limit} characters")
    return value


def _id(doc: dict[str, Any], name: str) -> str:
    value = _text(doc, name, MAX_ID_CHARS)
    if not value:
        raise InvalidRecord(f"{name}: must not be empty")
    return value


def _optional_text(doc: dict[str, Any], name: str) -> str | None:
    return None if doc.get(name) is None else _text(doc, name)


def _integer(doc: dict[str, Any], name: str) -> int:
    value = doc[name]
    if type(value) is not int or not 0 <= value <= MAX_INTEGER:
        raise InvalidRecord(f"{name}: expected an integer from 0 to {MAX_INTEGER}")
    return value


def _instant(doc: dict[str, Any], name: str) -> datetime:
    return from_ms(parse_timestamp(_text(doc, name), name))


def _period(doc: dict[str, Any]) -> date:
    try:
        return date.fromisoformat(_text(doc, "period"))
    except ValueError:
        raise InvalidRecord(f"period: not a date: {doc['period']!r}") from None


def _decimal(doc: dict[str, Any], name: str) -> Decimal:
    return Decimal(_text(doc, name))  # the schema's pattern admits plain decimals only


def _uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        raise InvalidRecord(f"{name}: not a UUID: {value!r}") from None


def _document(raw: bytes, max_bytes: int, schema: str) -> dict[str, Any]:
    return validate(schema, parse_json(raw, max_bytes))


def rated_call_row(raw: bytes, max_bytes: int) -> Row:
    doc = _document(raw, max_bytes, "rated_call")
    period = _period(doc)
    sub, call = _id(doc, "subscription_id"), _id(doc, "call_id")
    charge = doc["charge_id"]
    values = (
        period, sub, call, _id(doc, "billing_account_id"), _id(doc, "user_id"),
        _instant(doc, "started_at"), doc["zone"], doc["direction"], doc["emergency"],
        _integer(doc, "duration_s"), _integer(doc, "billable_s"), _integer(doc, "included_s"),
        _integer(doc, "overage_s"), _integer(doc, "unbilled_s"), doc["outcome"],
        _decimal(doc, "amount"), doc["currency"],
        None if charge is None else _uuid(charge, "charge_id"),
        _instant(doc, "rated_at"), _optional_text(doc, "destination"), raw.decode(),
    )
    return Row("rated_calls", (period, sub, call), month_of(period), values)


def charge_row(raw: bytes, max_bytes: int) -> Row:
    doc = _document(raw, max_bytes, "overage_charge")
    period = _period(doc)
    charge = _uuid(doc["charge_id"], "charge_id")
    values = (
        period, charge, _id(doc, "subscription_id"), _id(doc, "billing_account_id"),
        _id(doc, "user_id"), _id(doc, "call_id"), doc["zone"], _integer(doc, "overage_s"),
        _decimal(doc, "rate_per_minute"), _decimal(doc, "amount"), doc["currency"],
        _instant(doc, "started_at"), _instant(doc, "rated_at"), raw.decode(),
    )
    return Row("overage_charges", (period, charge), month_of(period), values)


def adjustment_row(raw: bytes, max_bytes: int) -> Row:
    doc = _document(raw, max_bytes, "adjustment")
    adjustment = _uuid(doc["adjustment_id"], "adjustment_id")
    original = doc["original_charge_id"]
    values = (
        adjustment, _uuid(doc["rerate_id"], "rerate_id"), _id(doc, "call_id"),
        _id(doc, "subscription_id"), _id(doc, "billing_account_id"), _period(doc),
        None if original is None else _uuid(original, "original_charge_id"),
        _decimal(doc, "original_amount"), _decimal(doc, "new_amount"),
        _decimal(doc, "delta"), doc["currency"], _text(doc, "reason"), _instant(doc, "at"),
        raw.decode(),
    )
    return Row("adjustments", (adjustment,), None, values)


def audit_row(raw: bytes, max_bytes: int, partition: int, offset: int,
              timestamp_ms: int) -> Row | None:
    """The audit row of a subscription event, or None when it is not an audited type
    (`subscription.upserted` and anything invalid: the worker dead-letters those).
    An event without `at` is dated by its Kafka timestamp."""
    try:
        doc = _document(raw, max_bytes, "subscription_event")
    except InvalidRecord:
        return None
    if doc["type"] not in AUDITED_TYPES:
        return None
    try:
        at = _instant(doc, "at") if doc.get("at") is not None else from_ms(timestamp_ms)
        values = (
            hashlib.sha256(raw).digest(), _id(doc, "subscription_id"), doc["type"], at,
            _optional_text(doc, "actor"), _optional_text(doc, "role"), raw.decode(),
            partition, offset,
        )
    except InvalidRecord:
        return None
    return Row("audit_events", (values[0],), None, values)
