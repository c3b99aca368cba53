"""`rater history rebuild`: refill the history tables from the topics, from the beginning.

Reads calls.rated, billing.overage-charges and subscriptions.events from their
first retained offset up to their end when it starts, and writes every record
through the same decoding and idempotent writer as the sink: rows already stored
change nothing, so it can run at any time, beside a running sink, and again.
It commits no consumer offsets and sends no dead letters (the sink did, for the
records it could not store); it counts them. The progress bar goes to stderr.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from rater.config import Settings
from rater.history import db
from rater.history.migrations import migrate
from rater.history.sink import RecordDecoder, utc_today
from rater.history.writer import RowWriter
from rater.kafka import TopicReader
from rater.progress import ProgressBar


@dataclass
class RebuildReport:
    records: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    skipped_events: int = 0
    expired_rows: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        new = ", ".join(f"{table} {n}" for table, n in sorted(self.inserted.items())) or "none"
        return [
            f"records read: {self.records}",
            f"rows new to the tables: {new} (the rest were already stored)",
            f"invalid records (not stored): {self.invalid}; subscription events not audited: "
            f"{self.skipped_events}; rows of periods past the retention: {self.expired_rows}",
            f"done in {self.seconds:.1f}s",
        ]


async def rebuild_history(settings: Settings, progress: TextIO | None = sys.stderr,
                          timeout_s: float = 3600.0) -> RebuildReport:
    """`progress`: where the progress bar goes (None: nowhere)."""
    started = time.monotonic()
    report = RebuildReport()
    decoder = RecordDecoder(settings, utc_today)
    writer = RowWriter()
    conn = await db.connect(settings)
    t = settings.topics
    try:
        await migrate(conn, settings.history_schema)
        async with TopicReader(settings.kafka_bootstrap,
                               [t.rated, t.charges, t.subscription_events,
                                t.adjustments]) as reader:
            bar = (ProgressBar(await reader.remaining(), stream=progress)
                   if progress is not None else None)
            async for messages in reader.batches_to_end(timeout_s,
                                                        settings.history_batch_max):
                decoded = decoder.decode(messages)
                written = await writer.write(conn, decoded.rows)
                for table, n in written.inserted.items():
                    report.inserted[table] = report.inserted.get(table, 0) + n
                report.records += len(messages)
                report.invalid += len(decoded.dead_letters)
                report.skipped_events += decoded.skipped_events
                report.expired_rows += decoded.expired_rows
                if bar is not None:
                    bar.advance(len(messages))
            if bar is not None:
                bar.finish()
    finally:
        await conn.close()
    report.seconds = time.monotonic() - started
    return report
