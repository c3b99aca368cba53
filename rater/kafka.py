"""Plain aiokafka helpers outside the worker's own consumers: topic creation, waiting for
the broker, a producer for the CLI, reading topics from their beginning, and asking who
is in a consumer group. The CLI, the tests and the benchmarks use these; the worker's
agents and consumers live in `rater.agents`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.admin import (
    DescribeGroupsRequest,
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
)

from rater.config import Settings


async def ensure_topics(
    settings: Settings, names: Iterable[str] | None = None, replication: int = 1
) -> list[str]:
    """Create the topics that are missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in (names or settings.topics.all()) if n not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a racing creator won
                await admin.create_topics(
                    [NewTopic(n, settings.topic_partitions, replication) for n in wanted]
                )
        return wanted
    finally:
        await admin.close()


async def wait_for_kafka(settings: Settings) -> None:
    """Raise ConnectionError after `startup_retry_s` without a metadata answer."""
    deadline = time.monotonic() + settings.startup_retry_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                    request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(1.0)
    raise ConnectionError(
        f"Kafka at {settings.kafka_bootstrap} unreachable after "
        f"{settings.startup_retry_s:.0f}s: {last}"
    )


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


class TopicReader:
    """Reads topics from their beginning, outside any consumer group (nothing is committed).

    `batch()` returns what the next fetch brings, for a caller that stops when it has
    seen enough; `to_end()` returns everything up to the end offsets the topics have at
    that moment. Records come partition by partition in offset order, so the records of
    one subscription (one key, one partition) keep their order.
    """

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.topics = list(topics)
        self.consumer = AIOKafkaConsumer(
            *self.topics, bootstrap_servers=bootstrap, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
        )

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await stop_quietly(self.consumer)

    async def batch(self, timeout_ms: int = 500, max_records: int = 20_000) -> list[Any]:
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [m for messages in fetched.values() for m in messages]

    async def to_end(self, timeout_s: float = 600.0) -> list[Any]:
        """Every record from the current positions up to the end offsets as of now."""
        records: dict[tuple[str, int], list[Any]] = {}
        async for batch in self.batches_to_end(timeout_s):
            for m in batch:
                records.setdefault((m.topic, m.partition), []).append(m)
        return [m for key in sorted(records) for m in records[key]]

    async def remaining(self, timeout_s: float = 60.0) -> int:
        """How many records lie between the current positions and the end offsets now."""
        parts = await self._partitions(timeout_s)
        ends = await self.consumer.end_offsets(parts)
        total = 0
        for tp in parts:
            total += max(0, ends[tp] - await self.consumer.position(tp))
        return total

    async def batches_to_end(self, timeout_s: float = 600.0,
                             max_records: int = 50_000) -> AsyncIterator[list[Any]]:
        """The records up to the end offsets as of the first call, fetch by fetch (each
        partition in offset order), without holding them all: for topics of any size."""
        deadline = time.monotonic() + timeout_s
        parts = await self._partitions(timeout_s)
        ends = await self.consumer.end_offsets(parts)
        pending = {tp for tp in parts if await self.consumer.position(tp) < ends[tp]}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {self.topics} took more than {timeout_s:.0f}s")
            fetched = await self.consumer.getmany(*pending, timeout_ms=1000,
                                                  max_records=max_records)
            batch: list[Any] = []
            for tp, messages in fetched.items():
                batch.extend(m for m in messages if m.offset < ends[tp])
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            if batch:
                yield batch

    async def _partitions(self, timeout_s: float) -> list[TopicPartition]:
        """Every partition of the topics (all must exist), once the consumer has them."""
        deadline = time.monotonic() + timeout_s
        missing = set(self.topics) - set(await self.consumer.topics())
        if missing:
            raise RuntimeError(f"topic(s) {', '.join(sorted(missing))} do not exist")
        while not self._all_assigned():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {self.topics} after {timeout_s:.0f}s")
            await self.consumer._client.force_metadata_update()
            await asyncio.sleep(0.05)
        return sorted(self.consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))

    def _all_assigned(self) -> bool:
        assigned = {tp.topic for tp in self.consumer.assignment()}
        return all(topic in assigned for topic in self.topics)


async def read_to_end(bootstrap: str, topics: Sequence[str], timeout_s: float = 600.0) -> list[Any]:
    """Every record of `topics` up to their end offsets now (see TopicReader)."""
    async with TopicReader(bootstrap, topics) as reader:
        return await reader.to_end(timeout_s)


async def stop_quietly(client: Any) -> None:
    """aiokafka's stop() can raise CancelledError from its own fetch task; only ours count."""
    task = asyncio.current_task()
    try:
        await client.stop()
    except asyncio.CancelledError:
        if task is not None and task.cancelling():
            raise


class _DescribeGroups(DescribeGroupsRequest):  # type: ignore[misc]
    """DescribeGroups up to v2: aiokafka 0.14 cannot decode a v3 answer from Kafka 4."""


_DescribeGroups._CLASSES = (DescribeGroupsRequest_v0, DescribeGroupsRequest_v1,
                            DescribeGroupsRequest_v2)


async def group_members(bootstrap: str, group_ids: Sequence[str]) -> dict[str, int]:
    """How many members each consumer group has now (0 for an empty or unknown group)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        members: dict[str, int] = {}
        for group_id in group_ids:
            node = await admin.find_coordinator(group_id)
            answer = await admin._client.send(node, _DescribeGroups(groups=[group_id]))
            for group in answer.groups:
                members[group[1]] = len(group[5])
        return members
    finally:
        await admin.close()
