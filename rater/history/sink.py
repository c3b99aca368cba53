"""The history sink: calls.rated, billing.overage-charges, billing.adjustments and
subscriptions.events -> PostgreSQL.

One aiokafka consumer in its own group, `<app_id>-history`, reads the three topics
in batches of up to RATER_HISTORY_BATCH_MAX records. For each batch, in order:

1. every record becomes a row (`rows`), or a dead letter with reason `invalid`
   (rated calls and charges), or nothing (subscription events other than
   `payg.changed` and `spend_limit.changed`, and invalid ones, which the worker's own
   agent dead-letters);
2. the rows are written in one transaction, idempotently (`writer`);
3. the dead letters are sent and acknowledged;
4. only then the batch's offsets are committed.

At least once, and idempotent in the table: each record is stored exactly once. A
crash replays at most the uncommitted batch, which changes nothing already stored.
A PostgreSQL outage retries the batch with backoff, reconnecting, for as long as it
lasts: no record is skipped, and the sink never gives up on its own. Rows of periods
older than the retention are not written (their partitions are dropped); once an
hour the sink drops the partitions that have become that old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from rater.config import Settings
from rater.history import db
from rater.history.migrations import migrate
from rater.history.partitions import drop_expired, first_month_kept
from rater.history.rows import Row, adjustment_row, audit_row, charge_row, rated_call_row
from rater.history.writer import RowWriter
from rater.messages import Emit, SourceRecord, dead_letter
from rater.rating.clock import now_ms
from rater.records import InvalidRecord

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
REVOKE_WAIT_S = 60.0
RETENTION_INTERVAL_S = 3600.0
POLL_MS = 500
LOGGED_DEAD_LETTERS_PER_BATCH = 10


@dataclass
class SinkCounts:
    """What the sink has done since it started (for logs and tests)."""

    batches: int = 0
    records: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    skipped_events: int = 0
    expired_rows: int = 0
    db_failures: int = 0


@dataclass
class DecodedBatch:
    rows: list[Row] = field(default_factory=list)
    dead_letters: list[Emit] = field(default_factory=list)
    skipped_events: int = 0
    expired_rows: int = 0


class RecordDecoder:
    """Kafka records of the three topics -> rows, dead letters, or nothing."""

    def __init__(self, settings: Settings, today: Callable[[], date]) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.today = today

    def decode(self, messages: Sequence[Any]) -> DecodedBatch:
        out = DecodedBatch()
        oldest_kept = first_month_kept(self.today(), self.settings.history_retention_months)
        max_bytes = self.settings.max_record_bytes
        for m in messages:
            raw: bytes = m.value or b""
            if m.topic == self.topics.subscription_events:
                row = audit_row(raw, max_bytes, m.partition, m.offset, m.timestamp)
                if row is None:
                    out.skipped_events += 1
                else:
                    out.rows.append(row)
                continue
            try:
                if m.topic == self.topics.rated:
                    row = rated_call_row(raw, max_bytes)
                elif m.topic == self.topics.charges:
                    row = charge_row(raw, max_bytes)
                else:
                    row = adjustment_row(raw, max_bytes)
            except Exception as exc:  # InvalidRecord, or anything else no row can be made of
                detail = str(exc) if isinstance(exc, InvalidRecord) else repr(exc)
                source = SourceRecord(m.topic, m.partition, m.offset, m.key, m.value)
                out.dead_letters.append(dead_letter(
                    self.topics.dlq, source, "invalid", f"history: {detail}", now_ms()))
                continue
            if row.month is not None and row.month < oldest_kept:
                out.expired_rows += 1  # its partition is (or is about to be) dropped
                continue
            out.rows.append(row)
        return out


def utc_today() -> date:
    return datetime.now(UTC).date()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: HistorySink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # the batch in flight commits its own offsets once it is stored
        await self.sink.wait_idle(REVOKE_WAIT_S)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("history sink partitions assigned: %s",
                 sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


class HistorySink:
    """`run()` consumes until `stop_soon()`; see the module docstring for the contract."""

    def __init__(self, settings: Settings, today: Callable[[], date] = utc_today) -> None:
        self.settings = settings
        self.today = today
        self.decoder = RecordDecoder(settings, today)
        self.writer = RowWriter()
        self.counts = SinkCounts()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.conn: asyncpg.Connection | None = None
        self._busy = asyncio.Lock()  # held while a batch is between fetch and commit
        self._stopping = asyncio.Event()
        self._retention_due = 0.0  # monotonic time of the next retention round

    @property
    def topics(self) -> list[str]:
        t = self.settings.topics
        return [t.rated, t.charges, t.subscription_events, t.adjustments]

    async def run(self) -> None:
        """Connect to Kafka, consume until `stop_soon()`, then close everything."""
        await self._start()
        try:
            await self._consume()
        finally:
            await self._close()

    async def _start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, acks="all", client_id=f"{s.app_id}-history")
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=s.history_group,
            client_id=f"{s.app_id}-history", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=s.history_batch_max,
            # a PostgreSQL outage holds a batch for as long as it lasts: stay in the group
            max_poll_interval_ms=3_600_000)
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        log.info("history sink: %s -> PostgreSQL schema %s (group %s, batches of up to %d)",
                 ", ".join(self.topics), s.history_schema, s.history_group, s.history_batch_max)

    def stop_soon(self) -> None:
        """Ask `run()` to return after the batch in hand (a batch still retrying is given
        up uncommitted: it is read again on the next start)."""
        self._stopping.set()

    async def _close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        await self._drop_connection()

    async def wait_idle(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._busy.acquire(), timeout)
        except TimeoutError:
            log.warning("history sink: batch still in flight after %.0fs; it stays "
                        "uncommitted and will be read again", timeout)
            return
        self._busy.release()

    async def _consume(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_MS,
                                           max_records=self.settings.history_batch_max)
            async with self._busy:
                assigned = consumer.assignment()
                messages = [m for tp, ms in batch.items() if tp in assigned for m in ms]
                if messages:
                    await self._handle(messages)
                if time.monotonic() >= self._retention_due:
                    await self._retention()

    async def _handle(self, messages: list[Any]) -> None:
        decoded = self.decoder.decode(messages)
        written = await self._write(decoded.rows)
        if written is None or not await self._send(decoded.dead_letters):
            return  # stopping: uncommitted, read again next time
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        await self._commit(offsets)
        c = self.counts
        c.batches += 1
        c.records += len(messages)
        for table, n in written.items():
            c.inserted[table] = c.inserted.get(table, 0) + n
        c.dead_letters += len(decoded.dead_letters)
        c.skipped_events += decoded.skipped_events
        c.expired_rows += decoded.expired_rows
        for letter in decoded.dead_letters[:LOGGED_DEAD_LETTERS_PER_BATCH]:
            fields = letter.log_fields or {}
            log.warning("history sink: dead letter invalid (%s offset %s/%s): %s",
                        fields.get("source_topic"), fields.get("source_partition"),
                        fields.get("source_offset"), fields.get("detail"))

    async def _connection(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            conn = await db.connect(self.settings)
            try:
                applied = await migrate(conn, self.settings.history_schema)
            except BaseException:
                conn.terminate()
                raise
            if applied:
                log.info("history: applied migrations %s to schema %s", applied,
                         self.settings.history_schema)
            self.conn = conn
        return self.conn

    async def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _write(self, rows: list[Row]) -> dict[str, int] | None:
        """The rows stored (table -> rows new to it); None when stopping before that."""
        backoff = 0.2
        while True:
            try:
                conn = await self._connection()
                return (await self.writer.write(conn, rows)).inserted
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counts.db_failures += 1
                await self._drop_connection()
                log.warning("history sink: PostgreSQL failed (%s: %s); retrying the batch of "
                            "%d rows in %.1fs", type(exc).__name__, exc, len(rows), backoff)
            if await self._sleep_or_stop(backoff):
                return None
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _send(self, letters: list[Emit]) -> bool:
        producer = self.producer
        assert producer is not None
        backoff = 0.2
        while letters:
            try:
                pending = [await producer.send(e.topic, value=e.value, key=e.key)
                           for e in letters]
                await asyncio.gather(*pending)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("history sink: sending %d dead letters failed (%s); retrying in "
                            "%.1fs", len(letters), exc, backoff)
            if await self._sleep_or_stop(backoff):
                return False
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        return True

    async def _commit(self, offsets: dict[Any, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # the partitions moved on: their new owner reads the batch again, which
            # changes nothing already stored
            log.warning("history sink: commit failed (%s); the batch will be read again", exc)

    async def _retention(self) -> None:
        self._retention_due = time.monotonic() + RETENTION_INTERVAL_S
        try:
            conn = await self._connection()
            await drop_expired(conn, self.today(), self.settings.history_retention_months)
        except Exception as exc:  # next round; rows of expired periods are not written
            self._retention_due = time.monotonic() + 60.0
            await self._drop_connection()
            log.warning("history retention failed (%s: %s); trying again in a minute",
                        type(exc).__name__, exc)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep, or return True at once when asked to stop."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True
