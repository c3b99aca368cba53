"""The direct CDR consumer (`RATER_CDR_CONSUMER=direct`, the default): calls.cdr without
Faust's streams.

Faust's per-event machinery (one Event, one stream hop and one ack per record)
costs far more than rating a CDR does; see docs/performance.md. In this mode the
worker is still `rater worker` and still the Faust app (web server, /metrics, the
attempts and subscription-events agents), but calls.cdr is read by this service
with its own aiokafka consumer in its own consumer group, `<app_id>-cdr`.

The contract is the agents' (rater.agents.delivery), at least once:

1. `getmany` up to `batch_max` records (per partition in offset order, so one
   subscription's CDRs keep their order), or up to `batch_steady_max` while fewer
   than `batch_max` records wait (short Lua scripts while keeping up);
2. the SAME `CdrBatchRater.rate` (one Lua call per batch);
3. every output record sent, and every broker ack awaited (acks=all);
4. only then the batch's offsets are committed (manual commit).

A Redis or Kafka failure retries the whole batch with backoff; the Lua script
dedupes by call id, so CDRs rated before the failure come back as their stored
results and are re-emitted identically (SPEC §5.8). On a rebalance the revoke
callback waits for the batch in flight to finish and commit before the
partitions move, so a clean hand-over re-delivers nothing; a crash re-delivers
at most the uncommitted batch, which the idempotent Lua absorbs.

The worker's HTTP API shares this event loop, so a batch's CPU work (decode, output
records, handing them to the producer) is done in steps and the loop is handed back
about every millisecond (`_Turns`); docs/performance.md, "Call set-up latency beside
rating".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import murmur2
from mode import Service

from rater.agents.delivery import Retry, settle
from rater.config import Settings
from rater.lag import LagGauge
from rater.messages import SourceRecord
from rater.service.rating import CdrBatchRater, PreparedBatch
from rater.service.step import BatchOutput

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REVOKE_WAIT_S = 60.0
LAG_INTERVAL_S = 5.0
KEY_HASH_CACHE = 200_000
MAX_DELIVERIES = 4  # batches sent but not yet acknowledged and committed
# redis-py's asyncio client writes a command on the 2nd event-loop iteration after the
# call starts (pool checkout, then the send); one more for slack
REQUEST_YIELDS = 3
# The HTTP API shares this event loop: a 1,000-CDR batch decoded or built in one go held it
# for 10-20 ms (more when the process was preempted meanwhile), and every request waited
# behind it. A batch's CPU work is done in steps of CPU_STEP CDRs (or output records, about
# 0.5 ms), and the consumer hands the loop back after TURN_S of them (see _Turns).
CPU_STEP = 50
TURN_S = 0.001
BEHIND_TURN_S = 0.005  # behind a backlog: fewer hand-backs, each an event-loop turn
MAX_TURN_S = 0.02


async def _let_request_out() -> None:
    """Yield until a just-started Redis call has been written to its socket. With a
    single `sleep(0)` the request left only after the synchronous CPU work that follows
    it (building and sending the previous batch's records): Redis and the worker took
    turns instead of working at the same time."""
    for _ in range(REQUEST_YIELDS):
        await asyncio.sleep(0)


class _Turns:
    """Turn-taking between the consumer's CPU work and the rest of the event loop (HTTP
    requests, Redis replies, the Kafka clients).

    `pause()` between two steps hands the loop back once the consumer has held it for its
    turn. While the consumer keeps up, the turn is TURN_S: the API comes first, and a
    request waits at most about that long for rating. While a backlog waits (`behind`,
    set by the consumer), the turn is BEHIND_TURN_S, or as long as the loop took to come
    back when that was longer (other work was queued: a burst of requests), up to
    MAX_TURN_S: the consumer then keeps about half the loop instead of waiting behind
    every queued request after each step, so rating does not starve under a flood of
    requests, and a backlog is rated with few hand-backs (each costs a loop turn)."""

    def __init__(self, turn_s: float = TURN_S, max_turn_s: float = MAX_TURN_S,
                 behind_turn_s: float = BEHIND_TURN_S) -> None:
        self.least, self.most, self.behind_least = turn_s, max_turn_s, behind_turn_s
        self.turn = turn_s
        self.since = time.perf_counter()
        self.behind = False

    def start(self) -> None:
        """The consumer holds the loop from now: call it only right after an await that
        surely handed the loop over (not every await does: a call that finds its result
        ready returns without a turn), or a turn could last longer than it should."""
        self.since = time.perf_counter()

    async def pause(self) -> None:
        now = time.perf_counter()
        if now - self.since < self.turn:
            return
        await asyncio.sleep(0)
        self.since = time.perf_counter()
        self.turn = min(self.most, max(self.behind_least, self.since - now)) \
            if self.behind else self.least


async def _stepped(steps: Generator[None, None, _T], turns: _Turns) -> _T:
    """Run a stepped computation (CdrBatchRater.prepare_steps / finish_steps), taking
    turns with the rest of the event loop between its steps."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            value: _T = done.value
            return value
        await turns.pause()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: DirectCdrConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # the batch in flight commits its own offsets once its outputs are acked
        await self.owner.wait_idle(REVOKE_WAIT_S)
        log.info("calls.cdr partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("calls.cdr partitions assigned: %s", sorted(tp.partition for tp in assigned))


@dataclass(slots=True)
class _Stage:
    """One batch between fetch and delivery."""

    records: list[SourceRecord]
    offsets: dict[Any, int]  # per partition: the offset to commit once delivered
    started: float
    batch: PreparedBatch
    call: asyncio.Future[list[str]] | None = None  # its Redis call (raw replies)


class DirectCdrConsumer(Service):  # type: ignore[misc]
    """Consume calls.cdr, rate, produce, await acks, then commit.

    A pipeline in one event loop: while Redis rates batch k, the worker decodes batch
    k+1 and builds batch k-1's records and hands them to the producer; the acks of up
    to MAX_DELIVERIES earlier batches and their commits complete meanwhile. Redis calls
    happen strictly in batch order (k+1's call starts only after k's answer), records
    reach the producer in batch order, and commits happen in batch order.
    """

    def __init__(self, settings: Settings, rater: CdrBatchRater, **kwargs: Any) -> None:
        self.settings = settings
        self.rater = rater
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._busy = asyncio.Lock()  # held while the pipeline advances
        self._in_redis: _Stage | None = None  # the batch whose Redis call is under way
        self._delivery: asyncio.Future[bool] | None = None  # the last batch handed over
        self._in_flight: list[asyncio.Future[bool]] = []  # handed over, not yet committed
        self._closing = False
        self._partitions: dict[str, list[int]] = {}  # output topic -> its partitions
        self._key_hashes: dict[bytes, int] = {}  # key -> murmur2(key), bounded
        self._lag = LagGauge()
        self._backlog = 0  # records waiting after the last batch taken (fetch highwaters)
        self._turns = _Turns()
        super().__init__(**kwargs)

    def assignment(self) -> set[Any]:
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    async def on_start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=0,
            max_batch_size=256 * 1024, client_id=f"{s.app_id}-cdr-producer",
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=s.cdr_group,
            client_id=f"{s.app_id}-cdr-consumer", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=s.batch_max,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe([s.topics.cdr], listener=_Rebalance(self))
        log.info("direct CDR consumer on %s (group %s, batches of up to %d)",
                 s.topics.cdr, s.cdr_group, s.batch_max)

    async def on_stop(self) -> None:
        self._closing = True
        await self.wait_idle(REVOKE_WAIT_S)
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def wait_idle(self, timeout: float) -> None:
        """Until no batch is being rated or delivered, i.e. every batch taken so far is
        committed (bounded: a batch stuck retrying stays uncommitted and is redelivered)."""
        try:
            await asyncio.wait_for(self._busy.acquire(), timeout)
        except TimeoutError:
            log.warning("calls.cdr batch still in flight after %.0fs; its offsets stay "
                        "uncommitted and it will be redelivered", timeout)
            return
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except TimeoutError:
            log.warning("calls.cdr batch still retrying after %.0fs; its offsets stay "
                        "uncommitted and it will be redelivered", timeout)
        finally:
            self._busy.release()

    async def _drain(self) -> None:
        await self._advance(None)  # the batch in Redis, if any: finished and handed over
        await self._delivered()

    @Service.task  # type: ignore[misc]
    async def _consume(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        within_ms = max(1, int(self.settings.batch_within_s * 1000))
        while not self.should_stop and not self._closing:
            # with a batch in Redis, take only what is already fetched: that batch must
            # not wait for new records to arrive before it is finished and delivered
            batch = await consumer.getmany(timeout_ms=0 if self._in_redis else within_ms,
                                           max_records=self._batch_limit())
            async with self._busy:
                if self._closing:
                    return
                if batch:
                    assigned = consumer.assignment()
                    batch = {tp: ms for tp, ms in batch.items() if tp in assigned}
                    self._backlog = self._waiting_after(batch)
                    self._turns.behind = self._backlog >= self.settings.batch_max
                await self._advance(batch)

    def _batch_limit(self) -> int:
        """Full batches (RATER_BATCH_MAX) while a backlog waits: fewer, longer scripts rate
        it fastest. Short ones (RATER_BATCH_STEADY_MAX) while the consumer keeps up: the
        same rate costs nothing more, and each script holds Redis (and with it every
        authorize request's read) for a few ms instead of up to ~20 ms."""
        s = self.settings
        return s.batch_max if self._backlog >= s.batch_max else min(s.batch_max,
                                                                     s.batch_steady_max)

    def _waiting_after(self, batch: dict[Any, list[Any]]) -> int:
        """Records still waiting on the batch's partitions after it, as of their last fetch
        (highwater); the partitions with nothing fetched are caught up or not yet seen."""
        assert self.consumer is not None
        waiting = 0
        for tp, messages in batch.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None and messages:
                waiting += max(0, highwater - messages[-1].offset - 1)
        return waiting

    async def _advance(self, batch: dict[Any, list[Any]] | None) -> None:
        """One step of the pipeline: decode the new batch and build its Redis request (while
        Redis rates the previous one), collect the previous batch's replies and start the
        new batch's Redis call at once, then parse those replies and build the previous
        batch's output records (while Redis rates the new one) and hand them to delivery.
        Redis calls, deliveries and commits each stay strictly in batch order; a batch is
        never rated before the one before it."""
        incoming = await self._take(batch) if batch else None
        current, self._in_redis = self._in_redis, None
        results = None
        if current is not None:
            results = await self._ratings(current)
            if results is None:  # stopping while Redis fails: nothing more is started
                return
        if incoming is not None:
            incoming.call = asyncio.ensure_future(self.rater.call_redis(incoming.batch))
            self._in_redis = incoming
            await _let_request_out()  # Redis rates it while the CPU work below runs
            self._turns.start()  # the loop was just handed over: a fresh turn
        if current is not None and results is not None:
            output = await _stepped(
                self.rater.finish_steps(current.batch, results, CPU_STEP), self._turns)
            await self._bound_deliveries()
            # the records go to the producer now, in batch order; their acks and the
            # commit are awaited by the delivery task, after the batch before's commit
            try:
                sent = await self._send(output)
            except Exception as exc:  # e.g. no metadata yet: the delivery retries it
                log.warning("rate: sending %d records failed (%s); retrying",
                            len(output.emits), exc)
                sent = None
            self._delivery = asyncio.ensure_future(self._deliver(
                output, sent, current.offsets, len(current.records), current.started,
                self._delivery))
            self._in_flight.append(self._delivery)

    async def _bound_deliveries(self) -> None:
        """At most MAX_DELIVERIES batches sent but not yet acknowledged and committed."""
        self._in_flight = [d for d in self._in_flight if not d.done()]
        while len(self._in_flight) >= MAX_DELIVERIES:
            await asyncio.wait([self._in_flight[0]])
            self._in_flight = [d for d in self._in_flight if not d.done()]

    async def _take(self, batch: dict[Any, list[Any]]) -> _Stage:
        records: list[SourceRecord] = []
        offsets: dict[Any, int] = {}
        for tp, messages in batch.items():
            for m in messages:
                records.append(SourceRecord(m.topic, m.partition, m.offset, m.key, m.value))
            offsets[tp] = messages[-1].offset + 1
        started = asyncio.get_running_loop().time()
        prepared = await _stepped(self.rater.prepare_steps(records, CPU_STEP), self._turns)
        return _Stage(records, offsets, started, prepared)

    async def _ratings(self, stage: _Stage) -> list[str] | None:
        """The stage's raw Redis replies; a failure retries the batch from scratch (decoded
        again with a fresh clock, exactly as CdrBatchRater.rate would be retried)."""
        retry = Retry("rate")
        while True:
            try:
                if stage.call is None:
                    stage.batch = self.rater.prepare(stage.records)
                    stage.call = asyncio.ensure_future(self.rater.call_redis(stage.batch))
                return list(await stage.call)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = retry.failed(exc, f"batch of {len(stage.records)}")
            stage.call = None
            if self._closing:
                log.warning("stopping with a batch of %d unrated; it will be redelivered",
                            len(stage.records))
                return None
            await asyncio.sleep(delay)

    async def _delivered(self) -> None:
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            await delivery

    async def _deliver(self, output: BatchOutput, sent: list[Any] | None,
                       offsets: dict[Any, int], size: int, started: float,
                       before: asyncio.Future[bool] | None) -> bool:
        """Await every ack of this batch's records (sending them again after a failure:
        a rating is never redone out of order), then the batch before's commit, then
        commit this batch: commits stay in batch order. False when it gave up (stopping),
        and then no later batch commits either: the uncommitted ones are redelivered."""
        retry = Retry("rate")
        while True:
            try:
                if sent is None:
                    sent = await self._send(output)
                if sent:
                    await asyncio.gather(*sent)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sent = None
                delay = retry.failed(exc, f"sending {len(output.emits)} records")
                if self._closing:
                    log.warning("stopping with a batch of %d undelivered; it will be "
                                "redelivered", size)
                    return False
                await asyncio.sleep(delay)
                continue
            break
        if before is not None and not await before:
            return False
        await self._commit(offsets)
        settle("rate", output, asyncio.get_running_loop().time() - started)
        return True

    async def _send(self, output: BatchOutput) -> list[Any]:
        """Every record into one record batch per topic-partition (partitioned exactly as
        the producer's default partitioner would: murmur2 of the key), handed to the
        producer; returns the futures of their acks. Per-record futures and partitioning
        are what a per-record `send` costs; a batch has one of each per partition."""
        producer = self.producer
        assert producer is not None
        builders: dict[tuple[str, int], Any] = {}
        pending = []
        for index, emit in enumerate(output.emits):
            if index and not index % CPU_STEP:
                await self._turns.pause()  # as _stepped: the API shares this event loop
            partition = await self._partition(emit.topic, emit.key)
            slot = (emit.topic, partition)
            builder = builders.get(slot)
            if builder is None:
                builder = builders[slot] = producer.create_batch()
            if builder.append(timestamp=None, key=emit.key, value=emit.value) is None:
                pending.append(await producer.send_batch(builder, emit.topic,
                                                         partition=partition))
                builder = builders[slot] = producer.create_batch()
                builder.append(timestamp=None, key=emit.key, value=emit.value)
        for (topic, partition), builder in builders.items():
            pending.append(await producer.send_batch(builder, topic, partition=partition))
        return pending

    async def _partition(self, topic: str, key: bytes | None) -> int:
        partitions = self._partitions.get(topic)
        if partitions is None:
            assert self.producer is not None
            await self.producer.client._wait_on_metadata(topic)
            known = self.producer.client.cluster.partitions_for_topic(topic)
            partitions = self._partitions[topic] = sorted(known)
        if key is None:  # as the default partitioner: any partition
            return random.choice(partitions)
        hashed = self._key_hashes.get(key)
        if hashed is None:
            if len(self._key_hashes) >= KEY_HASH_CACHE:
                self._key_hashes.clear()
            hashed = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    async def _commit(self, offsets: dict[Any, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # the partitions moved on: whoever owns them re-rates from the last commit,
            # and the idempotent Lua re-emits identical records
            log.warning("calls.cdr commit of %d partition(s) failed (%s); the new owner "
                        "will redeliver them", len(offsets), exc)

    @Service.timer(LAG_INTERVAL_S)  # type: ignore[misc]
    async def _report_lag(self) -> None:
        await self._lag.update(self.consumer)


def register_direct_consumer(app: Any, settings: Settings, rater: CdrBatchRater) -> None:
    """Start a DirectCdrConsumer with the Faust app (instead of the rate-cdrs agent)."""

    class BoundDirectCdrConsumer(DirectCdrConsumer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings, rater, **kwargs)

    app.service(BoundDirectCdrConsumer)


__all__: Sequence[str] = ("DirectCdrConsumer", "register_direct_consumer")
