"""`rater history rebuild`: refill the history tables from the topics, from the beginning.

Reads calls.rated, billing.overage-charges and subscriptions.events from their
first retained offset up to their end when it starts, and writes every record
through the same decoding and idempotent writer as the sink: rows already stored
change nothing, so it can run at any time, beside a running sink, and again.
It commits no consumer offsets and sends no dead letters (the sink did, for the
records it could not store); it counts them. Progress goes to stderr.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from rater.config import Settings
from rater.history import db
from rater.history.migrations import migrate
from rater.history.sink import RecordDecoder, _utc_today
from rater.history.writer import RowWriter

BAR_WIDTH = 30
ASSIGN_TIMEOUT_S = 30.0


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


class Progress:
    def __init__(self, total: int, out: TextIO | None) -> None:
        self.total, self.out, self.done = total, out, 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.out is None:
            return
        filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
        print(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total}",
              end="", file=self.out, flush=True)

    def finish(self) -> None:
        if self.out is not None:
            print(file=self.out)


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics` (all must exist), by topic and number."""
    existing = await consumer.topics()
    missing = [t for t in topics if t not in existing]
    if missing:
        raise RuntimeError(f"topics not found: {', '.join(missing)}")
    consumer.subscribe(topics)  # without a group: every partition, once metadata says
    deadline = time.monotonic() + ASSIGN_TIMEOUT_S
    while {tp.topic for tp in consumer.assignment()} != set(topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions of {', '.join(topics)} not known after "
                               f"{ASSIGN_TIMEOUT_S:.0f}s")
        await consumer.getmany(timeout_ms=100, max_records=1)  # read again from the start
    return sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))


async def rebuild_history(settings: Settings, progress: TextIO | None = sys.stderr,
                          timeout_s: float = 3600.0) -> RebuildReport:
    started = time.monotonic()
    report = RebuildReport()
    decoder = RecordDecoder(settings, _utc_today)
    writer = RowWriter()
    conn = await db.connect(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        await migrate(conn, settings.history_schema)
        await consumer.start()
        t = settings.topics
        tps = await _partitions(consumer, [t.rated, t.charges, t.subscription_events])
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        bar = Progress(sum(ends[tp] - starts[tp] for tp in tps), progress)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"rebuild took more than {timeout_s:.0f}s")
            batch = await consumer.getmany(*pending, timeout_ms=1000,
                                           max_records=settings.history_batch_max)
            messages: list[Any] = []
            for tp, ms in batch.items():
                messages += [m for m in ms if m.offset < ends[tp]]
                if ms and ms[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            decoded = decoder.decode(messages)
            written = await writer.write(conn, decoded.rows)
            for table, n in written.inserted.items():
                report.inserted[table] = report.inserted.get(table, 0) + n
            report.records += len(messages)
            report.invalid += len(decoded.dead_letters)
            report.skipped_events += decoded.skipped_events
            report.expired_rows += decoded.expired_rows
            bar.advance(len(messages))
        bar.finish()
    finally:
        await consumer.stop()
        await conn.close()
    report.seconds = time.monotonic() - started
    return report
