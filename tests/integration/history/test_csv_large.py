"""CSV export of 100,000 calls: every row, in order, with memory that stays flat."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import asyncpg
import pytest

from rater.history.calls import call_filter, iter_calls_csv
from rater.history.rows import rated_call_row
from rater.history.writer import RowWriter
from tests.integration.history.support import BASE, dumps, rated_call

pytestmark = pytest.mark.integration
ROWS = 100_000


async def test_a_hundred_thousand_rows_stream_in_flat_memory(conn: asyncpg.Connection) -> None:
    writer = RowWriter()
    for start in range(0, ROWS, 10_000):
        await writer.write(conn, [
            rated_call_row(dumps(rated_call(i, "sub-big", started=BASE + timedelta(seconds=i))),
                           65_536) for i in range(start, start + 10_000)])
    tracemalloc.start()
    try:
        lines = 0
        size = 0
        previous_first = None
        async for chunk in iter_calls_csv(conn, call_filter("sub-big"), chunk_rows=1000):
            lines += chunk.count(b"\r\n")
            size += len(chunk)
            if previous_first is None and lines > 1:
                previous_first = chunk.split(b",", 1)[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == ROWS + 1
    assert previous_first == f"call-{ROWS - 1:06d}".encode()  # newest first
    # the whole CSV is ~15 MB; a chunk of 1000 rows and its records, well under 2
    assert size > 10_000_000
    assert peak < 2_000_000, f"peak {peak} bytes while streaming {size} bytes of CSV"
