"""Monthly partitions of the period-partitioned tables, and their retention.

A row goes to the partition of the calendar month its period starts in; the
partition covers [first of that month, first of the next). Partitions are created
on demand, before the rows that need them are inserted, and dropped whole once
older than the retention (RATER_HISTORY_RETENTION_MONTHS).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import date

import asyncpg

log = logging.getLogger(__name__)

PARTITIONED_TABLES = ("rated_calls", "overage_charges")
# first key of the two-key advisory lock that serialises partition DDL in a schema
PARTITION_LOCK = 0x48_49_53_50
_PARTITION_NAME = re.compile(r"(?P<table>[a-z_]+)_p(?P<year>\d{4})_(?P<month>\d{2})")
# DROP TABLE waits for every query reading the parent; queries queue behind the DROP.
# Give up after this and try again at the next round rather than stall the readers.
DROP_LOCK_TIMEOUT = "5s"


def month_of(period: date) -> date:
    return period.replace(day=1)


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def first_month_kept(today: date, months_kept: int) -> date:
    """The oldest month whose periods are kept: this month and the `months_kept - 1` before."""
    return add_months(month_of(today), -(months_kept - 1))


class Partitions:
    """Creates missing partitions, remembering those this process has seen exist."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    def forget(self) -> None:
        """After a failed write: a partition may have been dropped by another process."""
        self._known.clear()

    async def ensure(self, conn: asyncpg.Connection, months: Iterable[date]) -> None:
        missing = sorted(set(months) - self._known)
        if not missing:
            return
        # its own transaction, serialised per schema: two sinks creating the same
        # partition at once would otherwise race on the catalog's unique indexes
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
                               PARTITION_LOCK)
            for month in missing:
                for table in PARTITIONED_TABLES:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(table, month)} "
                        f"PARTITION OF {table} FOR VALUES FROM ('{month.isoformat()}') "
                        f"TO ('{add_months(month, 1).isoformat()}')")
        self._known.update(missing)


async def existing_partitions(conn: asyncpg.Connection) -> dict[str, list[date]]:
    """Table -> the months of its partitions, oldest first."""
    rows = await conn.fetch("""
        SELECT parent.relname AS parent, child.relname AS child
        FROM pg_inherits
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relnamespace = current_schema()::regnamespace
          AND parent.relname = ANY($1::text[])""", list(PARTITIONED_TABLES))
    found: dict[str, list[date]] = {table: [] for table in PARTITIONED_TABLES}
    for row in rows:
        match = _PARTITION_NAME.fullmatch(row["child"])
        if match is not None and match["table"] == row["parent"]:
            found[row["parent"]].append(date(int(match["year"]), int(match["month"]), 1))
    return {table: sorted(months) for table, months in found.items()}


async def drop_expired(conn: asyncpg.Connection, today: date, months_kept: int) -> list[str]:
    """Drop every partition older than the retention; returns the names dropped."""
    oldest_kept = first_month_kept(today, months_kept)
    dropped = []
    for table, months in (await existing_partitions(conn)).items():
        for month in months:
            if month >= oldest_kept:
                continue
            name = partition_name(table, month)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
                                   PARTITION_LOCK)
                await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
            log.info("history retention: dropped %s (periods of %s; keeping %d months from %s)",
                     name, month.strftime("%Y-%m"), months_kept, oldest_kept.strftime("%Y-%m"))
            dropped.append(name)
    return dropped
