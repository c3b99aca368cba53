"""Plain aiokafka helpers for the CLI, tests and benchmarks (the worker itself uses Faust)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

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
