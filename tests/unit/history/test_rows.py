"""Topic records -> rows: what the sink stores, and what it refuses (dead letters)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from rater.history.rows import (
    RATED_CALL_COLUMNS,
    audit_row,
    charge_row,
    rated_call_row,
)
from rater.records import InvalidRecord

CALL: dict[str, Any] = {
    "call_id": "c-1", "subscription_id": "s-1", "billing_account_id": "b-1", "user_id": "u-1",
    "started_at": "2026-11-15T12:00:00.250Z", "period": "2026-11-15", "zone": "domestic",
    "direction": "outbound", "emergency": False, "duration_s": 61, "billable_s": 120,
    "included_s": 60, "overage_s": 60, "unbilled_s": 0, "outcome": "overage",
    "amount": "0.025000", "currency": "EUR", "charge_id": "6f1c2b9e-5d8a-5f3e-9b1c-0000000000aa",
    "rated_at": "2026-11-15T12:01:00Z",
}
CHARGE: dict[str, Any] = {
    "charge_id": CALL["charge_id"], "subscription_id": "s-1", "billing_account_id": "b-1",
    "user_id": "u-1", "call_id": "c-1", "period": "2026-11-15", "zone": "domestic",
    "overage_s": 60, "rate_per_minute": "0.025", "amount": "0.025000", "currency": "EUR",
    "started_at": CALL["started_at"], "rated_at": CALL["rated_at"],
}


def test_a_rated_call_becomes_typed_columns_and_its_own_text() -> None:
    raw = orjson.dumps(CALL)
    row = rated_call_row(raw, 65_536)
    values = dict(zip(RATED_CALL_COLUMNS, row.values, strict=True))
    assert row.table == "rated_calls"
    assert row.key == (date(2026, 11, 15), "s-1", "c-1")
    assert row.month == date(2026, 11, 1)
    assert values["started_at"] == datetime(2026, 11, 15, 12, 0, 0, 250_000, tzinfo=UTC)
    assert values["amount"] == Decimal("0.025000")
    assert values["charge_id"] == uuid.UUID(CALL["charge_id"])
    assert values["destination"] is None
    assert values["record"] == raw.decode()


def test_a_charge_becomes_typed_columns() -> None:
    row = charge_row(orjson.dumps(CHARGE), 65_536)
    assert row.key == (date(2026, 11, 15), uuid.UUID(CHARGE["charge_id"]))
    assert row.values[8:10] == (Decimal("0.025"), Decimal("0.025000"))


@pytest.mark.parametrize("change", [
    {"user_id": "u\x00"},
    {"call_id": "c" * 129},
    {"call_id": ""},
    {"duration_s": 2**31},
    {"duration_s": 61.0},
    {"period": "2026-02-30"},
    {"charge_id": "not-a-uuid"},
    {"amount": 0.025},
    {"started_at": "yesterday"},
    {"destination": "0301234"},
    {"zone": "moon"},
    {"extra": 1},
])
def test_records_a_column_would_refuse_are_invalid(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord):
        rated_call_row(orjson.dumps({**CALL, **change}), 65_536)


def test_oversized_and_non_json_records_are_invalid() -> None:
    with pytest.raises(InvalidRecord, match="exceeds"):
        rated_call_row(orjson.dumps(CALL), 100)
    with pytest.raises(InvalidRecord, match="not JSON"):
        charge_row(b"\xff\xfe", 65_536)


def test_only_valid_payg_changes_are_audited() -> None:
    event = {"type": "payg.changed", "subscription_id": "s-1", "enabled": True,
             "previous": False, "actor": "alice", "role": "owner",
             "at": "2026-11-15T12:00:00Z"}
    raw = orjson.dumps(event)
    row = audit_row(raw, 65_536, 2, 41, 0)
    assert row is not None and row.key == row.values[:1] and len(row.values[0]) == 32
    assert row.values[1:6] == ("s-1", "payg.changed",
                               datetime(2026, 11, 15, 12, tzinfo=UTC), "alice", "owner")
    assert row.values[7:] == (2, 41)
    without_at = {k: v for k, v in event.items() if k != "at"}
    undated = audit_row(orjson.dumps(without_at), 65_536, 0, 0, 1_700_000_000_000)
    assert undated is not None and undated.values[3] == datetime(2023, 11, 14, 22, 13, 20,
                                                                  tzinfo=UTC)
    upsert = {"type": "subscription.upserted", "subscription": {}}
    assert audit_row(orjson.dumps(upsert), 65_536, 0, 0, 0) is None
    assert audit_row(b"junk", 65_536, 0, 0, 0) is None
    assert audit_row(orjson.dumps({**event, "actor": "a\x00"}), 65_536, 0, 0, 0) is None
