"""Rows into partitioned tables: partitions on demand, idempotent inserts, exact amounts."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import asyncpg
import orjson
import pytest

from rater.config import Settings
from rater.history import db
from rater.history.partitions import drop_expired, existing_partitions
from rater.history.rows import audit_row, charge_row, rated_call_row
from rater.history.writer import RowWriter
from tests.integration.history.support import (
    amount_for,
    charge_of,
    dumps,
    payg_event,
    rated_call,
)

pytestmark = pytest.mark.integration
MAX = 65_536


async def test_a_period_starting_mid_month_goes_to_that_months_partition(
        conn: asyncpg.Connection) -> None:
    rows = [rated_call_row(dumps(rated_call(1, period="2026-11-15")), MAX),
            rated_call_row(dumps(rated_call(2, period="2026-12-01")), MAX)]
    await RowWriter().write(conn, rows)
    placed = await conn.fetch("SELECT call_id, tableoid::regclass::text AS part "
                              "FROM rated_calls ORDER BY call_id")
    assert [(r["call_id"], r["part"]) for r in placed] == [
        ("call-000001", "rated_calls_p2026_11"), ("call-000002", "rated_calls_p2026_12")]
    parts = await existing_partitions(conn)
    assert parts == {"rated_calls": [date(2026, 11, 1), date(2026, 12, 1)],
                     "overage_charges": [date(2026, 11, 1), date(2026, 12, 1)]}


async def test_there_is_no_default_partition(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="no partition"):
        await conn.execute(
            "INSERT INTO rated_calls (period, subscription_id, call_id, billing_account_id, "
            "user_id, started_at, zone, direction, emergency, duration_s, billable_s, "
            "included_s, overage_s, unbilled_s, outcome, amount, currency, rated_at, record) "
            "VALUES ('2030-01-01', 's', 'c', 'b', 'u', now(), 'domestic', 'outbound', false, "
            "0, 0, 0, 0, 0, 'free', 0, 'EUR', now(), '{}')")


async def test_the_same_batch_twice_stores_the_same_rows(conn: asyncpg.Connection) -> None:
    calls = [rated_call(i, overage_s=61 * (i % 2), amount=amount_for(61 * (i % 2), "0.025"))
             for i in range(1, 201)]
    raw = [dumps(c) for c in calls]
    rows = [rated_call_row(r, MAX) for r in raw]
    rows += [charge_row(dumps(charge_of(c)), MAX) for c in calls if c["charge_id"]]
    rows += [audit_row(dumps(payg_event("sub-1", True, "2026-11-15T12:00:00Z")), MAX, 0, 7, 0)]
    writer = RowWriter()
    first = await writer.write(conn, [r for r in rows if r is not None])
    snapshot = await conn.fetch("SELECT * FROM rated_calls ORDER BY call_id")
    second = await writer.write(conn, [r for r in rows if r is not None])
    assert first.inserted == {"rated_calls": 200, "overage_charges": 100, "audit_events": 1}
    assert second.inserted == {"rated_calls": 0, "overage_charges": 0, "audit_events": 0}
    assert await conn.fetch("SELECT * FROM rated_calls ORDER BY call_id") == snapshot
    stored = await conn.fetch("SELECT record::text AS r FROM rated_calls ORDER BY call_id")
    assert [s["r"].encode() for s in stored] == raw  # byte for byte as emitted


async def test_the_first_record_of_a_key_stands(conn: asyncpg.Connection) -> None:
    first = rated_call(5, user="first")
    later = rated_call(5, user="later")
    writer = RowWriter()
    await writer.write(conn, [rated_call_row(dumps(first), MAX),
                              rated_call_row(dumps(later), MAX)])
    await writer.write(conn, [rated_call_row(dumps(later), MAX)])
    users = await conn.fetch("SELECT user_id FROM rated_calls")
    assert [u["user_id"] for u in users] == ["first"]


async def test_amounts_are_stored_exactly(conn: asyncpg.Connection) -> None:
    amounts = ["0.000001", "123456789012.345678", "0.416667", "7"]
    calls = [rated_call(i, overage_s=100 + i, amount=a) for i, a in enumerate(amounts)]
    await RowWriter().write(conn, [rated_call_row(dumps(c), MAX) for c in calls])
    stored = await conn.fetch("SELECT amount, record->>'amount' AS text FROM rated_calls "
                              "ORDER BY call_id")
    assert [s["amount"] for s in stored] == [Decimal(a) for a in amounts]
    assert [s["text"] for s in stored] == amounts


async def test_records_without_destination_are_stored_with_null(
        conn: asyncpg.Connection) -> None:
    old = rated_call(1, with_destination=False)
    new = rated_call(2, destination="+4412345678")
    await RowWriter().write(conn, [rated_call_row(dumps(old), MAX),
                                   rated_call_row(dumps(new), MAX)])
    stored = await conn.fetch("SELECT destination, record::text AS r FROM rated_calls "
                              "ORDER BY call_id")
    assert [s["destination"] for s in stored] == [None, "+4412345678"]
    assert "destination" not in orjson.loads(stored[0]["r"])


async def test_two_writers_creating_the_same_partitions_at_once(settings: Settings,
                                                               conn: asyncpg.Connection) -> None:
    others = [await db.connect(settings) for _ in range(4)]
    try:
        batches = [[rated_call_row(dumps(rated_call(100 * w + i, period=f"2027-{m:02d}-01")),
                                   MAX) for i in range(5) for m in range(1, 7)]
                   for w in range(len(others))]
        await asyncio.gather(*(RowWriter().write(c, b) for c, b in zip(others, batches,
                                                                        strict=True)))
    finally:
        for c in others:
            await c.close()
    assert await conn.fetchval("SELECT count(*) FROM rated_calls") == 4 * 5 * 6
    assert len((await existing_partitions(conn))["rated_calls"]) == 6


async def test_retention_drops_whole_partitions_older_than_kept(conn: asyncpg.Connection) -> None:
    months = ["2024-10-01", "2024-11-03", "2024-12-31", "2026-12-01"]
    await RowWriter().write(conn, [rated_call_row(dumps(rated_call(i, period=p)), MAX)
                                   for i, p in enumerate(months)])
    # 25 months kept on 2026-12-03: 2024-12 .. 2026-12
    dropped = await drop_expired(conn, date(2026, 12, 3), 25)
    assert sorted(dropped) == ["overage_charges_p2024_10", "overage_charges_p2024_11",
                               "rated_calls_p2024_10", "rated_calls_p2024_11"]
    left = await conn.fetch("SELECT period FROM rated_calls ORDER BY period")
    assert [r["period"].isoformat() for r in left] == ["2024-12-31", "2026-12-01"]
    assert await drop_expired(conn, date(2026, 12, 3), 25) == []
