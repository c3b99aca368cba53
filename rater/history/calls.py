"""Query: one subscription's rated calls, newest first, filtered and paged (SPEC §12).

`list_calls` returns one page of stored records and the cursor of the next;
`iter_calls_csv` streams every matching call as CSV in chunks, through a
server-side cursor, so memory stays flat however many calls match.

Order: `started_at` descending, then `call_id` descending (the keyset). `from` is
inclusive and `to` exclusive. Partitions are by period, not by start time, so the
time filters are also stated on `period` (a period starts on or before its calls'
day and lasts at most 31 days), which lets PostgreSQL skip whole partitions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from rater.history.csv_format import csv_rows
from rater.history.cursor import Position, decode_cursor, encode_cursor
from rater.rating.clock import from_ms
from rater.records import InvalidRecord, parse_timestamp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
OUTCOMES = ("included", "overage", "exhausted", "blocked", "free")
LONGEST_PERIOD = timedelta(days=31)
CSV_CHUNK_ROWS = 1000


class InvalidQuery(ValueError):
    """A filter the caller sent is malformed; the message names it (an HTTP 422)."""


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which calls of one subscription; build it with `call_filter` (it validates)."""

    subscription_id: str
    started_from: datetime | None = None
    started_before: datetime | None = None
    user_id: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class CallPage:
    records: list[str]  # the stored records, JSON text exactly as emitted, newest first
    next_cursor: str | None  # None: this was the last page


def _instant(text: str | None, name: str) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        return from_ms(parse_timestamp(text, name))
    except InvalidRecord as exc:
        raise InvalidQuery(str(exc)) from None


def call_filter(subscription_id: str, from_: str | None = None, to: str | None = None,
                user_id: str | None = None, outcome: str | None = None) -> CallFilter:
    """The filter of the query parameters `from`, `to` (RFC 3339), `user_id`, `outcome`."""
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidQuery(f"outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}")
    return CallFilter(subscription_id, _instant(from_, "from"), _instant(to, "to"),
                      user_id or None, outcome)


def page_limit(limit: int | str | None) -> int:
    if limit is None or limit == "":
        return DEFAULT_LIMIT
    try:
        value = int(limit)
    except ValueError:
        raise InvalidQuery(f"limit: expected an integer, got {limit!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidQuery(f"limit: must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def _where(f: CallFilter, after: Position | None) -> tuple[str, list[Any]]:
    """The WHERE clause (only the conditions in use: each shape gets a plan that uses
    its index) and its arguments."""
    args: list[Any] = [f.subscription_id]
    conditions = ["subscription_id = $1"]

    def bind(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.user_id is not None:
        conditions.append(f"user_id = {bind(f.user_id)}")
    if f.outcome is not None:
        conditions.append(f"outcome = {bind(f.outcome)}")
    if f.started_from is not None:
        conditions.append(f"started_at >= {bind(f.started_from)}")
        conditions.append(f"period > {bind((f.started_from - LONGEST_PERIOD).date())}")
    newest = f.started_before
    if f.started_before is not None:
        conditions.append(f"started_at < {bind(f.started_before)}")
    if after is not None:
        conditions.append(
            f"(started_at, call_id) < ({bind(after.started_at)}, {bind(after.call_id)})")
        if newest is None or after.started_at < newest:
            newest = after.started_at
    if newest is not None:
        conditions.append(f"period <= {bind(newest.date())}")
    return " AND ".join(conditions), args


_ORDER = "ORDER BY started_at DESC, call_id DESC"


async def list_calls(conn: asyncpg.Connection | asyncpg.Pool, f: CallFilter,
                     cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> CallPage:
    """One page of calls newest first, from where `cursor` left off."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
    after = decode_cursor(cursor) if cursor else None
    where, args = _where(f, after)
    rows = await conn.fetch(
        f"SELECT record::text AS record, started_at, call_id FROM rated_calls "
        f"WHERE {where} {_ORDER} LIMIT {limit + 1}", *args)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = encode_cursor(Position(last["started_at"], last["call_id"]))
    return CallPage([row["record"] for row in rows], next_cursor)


async def iter_calls_csv(conn: asyncpg.Connection, f: CallFilter,
                         chunk_rows: int = CSV_CHUNK_ROWS) -> AsyncIterator[bytes]:
    """Every matching call as RFC 4180 CSV (header first), in chunks of `chunk_rows`
    rows, newest first. Holds `conn` in a read-only transaction until exhausted or
    closed; the rows come through a server-side cursor, a chunk at a time."""
    where, args = _where(f, None)
    yield csv_rows([], header=True).encode()
    async with conn.transaction(readonly=True):
        cursor = await conn.cursor(
            f"SELECT record::text AS record FROM rated_calls WHERE {where} {_ORDER}", *args)
        while True:
            rows = await cursor.fetch(chunk_rows)
            if not rows:
                return
            yield csv_rows(row["record"] for row in rows).encode()
