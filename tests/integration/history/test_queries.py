"""The queries of SPEC §12 over stored rows: call list and paging, CSV, charge totals,
the PAYG audit trail. Expected results are computed here from the records written."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from rater.history.audit import payg_history
from rater.history.calls import InvalidQuery, call_filter, iter_calls_csv, list_calls
from rater.history.charges import charge_totals
from rater.history.csv_format import CSV_COLUMNS
from rater.history.cursor import InvalidCursor
from rater.history.rows import audit_row, charge_row, rated_call_row
from rater.history.writer import RowWriter
from tests.integration.history.support import (
    BASE,
    amount_for,
    charge_of,
    dumps,
    payg_event,
    rated_call,
)

pytestmark = pytest.mark.integration
MAX = 65_536
USERS = ("ann", "bob", "cy")
OUTCOMES = ("included", "exhausted", "blocked", "free")


def _period_of(started: datetime) -> str:
    """The period with anchor day 15 that contains `started` (SPEC §5.1)."""
    year, month = started.year, started.month
    if started.day < 15:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{year:04d}-{month:02d}-15"


def _calls(n: int, sub: str = "sub-q") -> list[dict[str, Any]]:
    """Calls over four periods (anchor day 15), several sharing a start instant."""
    rng = random.Random(7)
    calls = []
    for i in range(n):
        started = BASE + timedelta(minutes=rng.randrange(-40 * 24 * 60, 40 * 24 * 60))
        if i % 10 == 0 and calls:
            started = BASE  # ties on started_at: call_id decides the order
        period = _period_of(started)
        calls.append(rated_call(i, sub, user=USERS[i % 3], outcome=OUTCOMES[i % 4],
                                period=period, started=started))
    return calls


def _newest_first(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(calls, key=lambda c: (c["started_at"], c["call_id"]), reverse=True)


async def _store(conn: asyncpg.Connection, records: list[dict[str, Any]]) -> None:
    await RowWriter().write(conn, [rated_call_row(dumps(r), MAX) for r in records])


async def test_pages_cover_every_call_once_newest_first(conn: asyncpg.Connection) -> None:
    calls = _calls(523)
    await _store(conn, calls + _calls(40, sub="another"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await list_calls(conn, call_filter("sub-q"), cursor, limit=50)
        seen += page.records
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 20
    assert pages == 11
    assert [orjson.loads(r) for r in seen] == _newest_first(calls)


@pytest.mark.parametrize("filters", [
    {"user_id": "bob"},
    {"outcome": "blocked"},
    {"user_id": "cy", "outcome": "free"},
    {"from": "2026-11-01T00:00:00Z", "to": "2026-11-20T00:00:00Z"},
    {"from": "2026-11-15T12:00:00Z", "user_id": "ann"},
    {"to": "2026-10-20T08:30:00+02:00"},
])
async def test_filters_select_exactly_the_matching_calls(
        conn: asyncpg.Connection, filters: dict[str, str]) -> None:
    calls = _calls(300)
    await _store(conn, calls)

    def wanted(c: dict[str, Any]) -> bool:
        from rater.records import parse_timestamp
        start = parse_timestamp(c["started_at"], "s")
        return (c["user_id"] == filters.get("user_id", c["user_id"])
                and c["outcome"] == filters.get("outcome", c["outcome"])
                and ("from" not in filters or start >= parse_timestamp(filters["from"], "f"))
                and ("to" not in filters or start < parse_timestamp(filters["to"], "t")))

    f = call_filter("sub-q", filters.get("from"), filters.get("to"), filters.get("user_id"),
                    filters.get("outcome"))
    got: list[str] = []
    cursor = None
    for _ in range(100):
        page = await list_calls(conn, f, cursor, limit=7)
        got += page.records
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = _newest_first([c for c in calls if wanted(c)])
    assert expected, "the filter should match some calls"
    assert [orjson.loads(r) for r in got] == expected


async def test_bad_parameters_are_caller_errors(conn: asyncpg.Connection) -> None:
    with pytest.raises(InvalidQuery, match="outcome"):
        call_filter("s", outcome="paid")
    with pytest.raises(InvalidQuery, match="from"):
        call_filter("s", from_="yesterday")
    with pytest.raises(InvalidQuery, match="limit"):
        await list_calls(conn, call_filter("s"), limit=1001)
    with pytest.raises(InvalidCursor):
        await list_calls(conn, call_filter("s"), cursor="bm90LWEtY3Vyc29y")


async def test_csv_has_the_header_and_every_record_as_emitted(conn: asyncpg.Connection) -> None:
    calls = _calls(250)
    calls[3]["user_id"] = 'o"brien, "the, user"'  # quoting
    calls[4] = rated_call(4, "sub-q", with_destination=False)
    await _store(conn, calls)
    chunks = [c async for c in iter_calls_csv(conn, call_filter("sub-q"), chunk_rows=40)]
    text = b"".join(chunks).decode()
    assert len(chunks) == 1 + 7  # the header, then 250 rows in chunks of 40
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    expected = [[_cell(c.get(name)) for name in CSV_COLUMNS] for c in _newest_first(calls)]
    assert rows[1:] == expected


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def test_charge_totals_are_exact(conn: asyncpg.Connection) -> None:
    rng = random.Random(11)
    rates = ["0.025", "0.0333", "1.17"]
    records = []
    for i in range(400):
        overage = rng.randrange(1, 5000)
        rate = rates[i % 3]
        sub = f"sub-{i % 4}"
        period = "2026-11-01" if i % 4 != 3 else "2026-11-17"  # sub-3's anchor is the 17th
        started = BASE + timedelta(hours=rng.randrange(0, 24 * 12))
        call = rated_call(i, sub, user=USERS[i % 3], period=period, started=started,
                          overage_s=overage, amount=amount_for(overage, rate))
        call["currency"] = "USD" if i % 5 == 0 else "EUR"
        records.append(charge_of(call, rate))
    other = dict(records[0], billing_account_id="ba-other", charge_id=str(records[0]["call_id"]))
    other["charge_id"] = "6f1c2b9e-5d8a-5f3e-9b1c-000000000001"
    december = dict(records[1], period="2026-12-01",
                    charge_id="6f1c2b9e-5d8a-5f3e-9b1c-000000000002")
    await RowWriter().write(conn, [charge_row(dumps(r), MAX)
                                   for r in [*records, other, december]])

    totals = await charge_totals(conn, "ba-1", "2026-11")

    def sums(key: Any) -> dict[tuple[str, str], tuple[str, int, int]]:
        acc: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0])
        for r in records:
            slot = acc[(r["currency"], key(r))]
            slot[0] += Decimal(r["amount"])
            slot[1] += 1
            slot[2] += r["overage_s"]
        return {k: (f"{v[0]:.6f}", v[1], v[2]) for k, v in acc.items()}

    def got(totals_list: list[Any]) -> dict[tuple[str, str], tuple[str, int, int]]:
        return {(t.currency, t.key): (t.amount, t.charges, t.overage_s) for t in totals_list}

    assert got(totals.by_currency) == sums(lambda r: "")
    assert got(totals.by_subscription) == sums(lambda r: r["subscription_id"])
    assert got(totals.by_zone) == sums(lambda r: r["zone"])
    assert got(totals.by_user) == sums(lambda r: r["user_id"])
    assert got(totals.by_day) == sums(lambda r: r["started_at"][:10])
    only_first = await charge_totals(conn, "ba-1", "2026-11-01")
    assert sum(t.charges for t in only_first.by_currency) == 300  # sub-3 starts on the 17th
    with pytest.raises(InvalidQuery):
        await charge_totals(conn, "ba-1", "November")


async def test_payg_history_newest_first(conn: asyncpg.Connection) -> None:
    events = [payg_event("sub-p", i % 2 == 0, f"2026-11-{10 + i:02d}T09:00:00Z", f"actor-{i}",
                         revision=i + 1) for i in range(5)]
    same_instant = [payg_event("sub-p", True, "2026-11-20T00:00:00Z", "x", revision=10),
                    payg_event("sub-p", False, "2026-11-20T00:00:00Z", "y", revision=11)]
    noise = [payg_event("sub-other", True, "2026-11-30T00:00:00Z")]
    raw = [dumps(e) for e in [*events, *same_instant, *noise]]
    rows = [audit_row(r, MAX, 0, offset, 0) for offset, r in enumerate(raw)]
    await RowWriter().write(conn, [r for r in rows if r is not None])
    trail = await payg_history(conn, "sub-p")
    assert [orjson.loads(e.record)["revision"] for e in trail] == [11, 10, 5, 4, 3, 2, 1]
    assert [e.actor for e in trail[:2]] == ["y", "x"]
    assert all(e.role == "owner" and e.type == "payg.changed" for e in trail)
