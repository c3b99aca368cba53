"""Rows -> tables, idempotently: one transaction per batch, the first row of a key stands.

Each table's rows are COPYed into a temporary staging table (binary COPY: the fast
path), then moved with `INSERT … SELECT … ON CONFLICT DO NOTHING`. A row whose key
is already stored changes nothing, so writing the same batch twice leaves the
tables as writing it once (SPEC §5.8: re-emitted records are identical).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rater.history.partitions import Partitions
from rater.history.rows import COLUMNS, Row


@dataclass
class Written:
    """Rows offered and rows new to the tables, per table."""

    offered: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)


def first_of_each_key(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Table -> its rows, in order, without a later row whose key came before."""
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    tables: dict[str, list[Row]] = {}
    for row in rows:
        ident = (row.table, row.key)
        if ident not in seen:
            seen.add(ident)
            tables.setdefault(row.table, []).append(row)
    return tables


class RowWriter:
    def __init__(self) -> None:
        self.partitions = Partitions()
        # connections that already have their staging tables (they live per session)
        self._staged: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()

    async def write(self, conn: asyncpg.Connection, rows: Sequence[Row]) -> Written:
        """Store `rows` in one transaction. On any error nothing is stored, and the
        partitions are checked afresh on the next try."""
        tables = first_of_each_key(rows)
        written = Written()
        if not tables:
            return written
        try:
            await self.partitions.ensure(conn, {r.month for r in rows if r.month is not None})
            await self._stage(conn)
            async with conn.transaction():
                for table, table_rows in tables.items():
                    columns = COLUMNS[table]
                    await conn.copy_records_to_table(
                        f"{table}_staged", records=[r.values for r in table_rows],
                        columns=columns)
                    names = ", ".join(columns)
                    status = await conn.execute(
                        f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_staged "
                        "ON CONFLICT DO NOTHING")
                    written.offered[table] = len(table_rows)
                    written.inserted[table] = int(status.rsplit(" ", 1)[1])
        except BaseException:
            self.partitions.forget()
            raise
        return written

    async def _stage(self, conn: asyncpg.Connection) -> None:
        if conn in self._staged:
            return
        for table in COLUMNS:
            # emptied at every commit: the staging rows never outlive their batch
            await conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table}_staged "
                               f"(LIKE {table}) ON COMMIT DELETE ROWS")
        self._staged.add(conn)
