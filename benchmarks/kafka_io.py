"""Kafka plumbing for the benchmark: fast backlog production, waiting on end offsets (cheap,
so the waiting does not steal CPU from the process under test), reading outputs with their
record timestamps, and deleting the run's topics afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from rater.kafka import TopicReader

Record = tuple[bytes | None, bytes]


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if wanted:
            await admin.create_topics(wanted)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with this run's own prefix."""
    if not prefix:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
    except KafkaError:
        pass
    finally:
        await admin.close()


def fast_producer(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                            max_batch_size=512 * 1024)


async def produce_all(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Produce and wait for every ack; returns records/s."""
    out = fast_producer(bootstrap)
    await out.start()
    started = time.perf_counter()
    try:
        pending = [await out.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*pending)
    finally:
        await out.stop()
    return len(records) / (time.perf_counter() - started)


async def end_offsets(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> dict[str, int]:
    """Sum of end offsets per topic (topics were empty at creation)."""
    parts = []
    for topic in topics:
        for p in consumer.partitions_for_topic(topic) or ():
            parts.append(TopicPartition(topic, p))
    ends = await consumer.end_offsets(parts) if parts else {}
    totals = dict.fromkeys(topics, 0)
    for tp, offset in ends.items():
        totals[tp.topic] += offset
    return totals


async def offsets_probe(bootstrap: str, topics: Sequence[str]) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    for _ in range(50):
        await consumer._client.force_metadata_update()
        if all(consumer.partitions_for_topic(t) for t in topics):
            break
        await asyncio.sleep(0.1)
    return consumer


async def wait_for_counts(bootstrap: str, topics: Sequence[str], done: Any, timeout: float,
                          alive: Any = None, poll_s: float = 0.25) -> tuple[dict[str, int], float]:
    """Poll end offsets until `done(totals)`; returns (totals, monotonic time it held)."""
    probe = await offsets_probe(bootstrap, topics)
    deadline = time.monotonic() + timeout
    try:
        while True:
            totals = await end_offsets(probe, topics)
            if done(totals):
                return totals, time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"outputs incomplete after {timeout:.0f}s: {totals}")
            if alive is not None and not alive():
                raise RuntimeError(f"process under test exited; outputs so far {totals}")
            await asyncio.sleep(poll_s)
    finally:
        await probe.stop()


@dataclass
class Collected:
    values: dict[str, list[bytes]] = field(default_factory=dict)
    timestamps: dict[str, list[int]] = field(default_factory=dict)

    def first_last(self, topics: Sequence[str] | None = None) -> tuple[int, int]:
        stamps = [ts for t, v in self.timestamps.items() if topics is None or t in topics
                  for ts in v]
        return min(stamps), max(stamps)


async def read_all(bootstrap: str, topics: Sequence[str], want: dict[str, int],
                   timeout: float = 120.0) -> Collected:
    """Read `topics` from the beginning until each holds `want[topic]` records."""
    got = Collected({t: [] for t in topics}, {t: [] for t in topics})
    deadline = time.monotonic() + timeout
    async with TopicReader(bootstrap, topics) as reader:
        while any(len(got.values[t]) < want.get(t, 0) for t in topics):
            if time.monotonic() > deadline:
                counts = {t: len(v) for t, v in got.values.items()}
                raise TimeoutError(f"read {counts}, wanted {want}")
            for m in await reader.batch():
                got.values[m.topic].append(m.value)
                got.timestamps[m.topic].append(m.timestamp)
    return got
