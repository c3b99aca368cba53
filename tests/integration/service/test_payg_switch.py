"""A PAYG switch and its `payg.changed` audit record cannot be separated (SPEC §7,
rater/service/payg.py), against the real broker and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaProducer

from rater.kafka import read_to_end
from rater.rating.clock import now_ms
from rater.rating.outputs import payg_changed
from rater.service.audited import EventNotRecorded
from rater.service.payg import PaygSwitcher
from rater.store import RedisStore
from tests.builders import make_subscription
from tests.integration.harness import Deployment, consume, produce, running_worker


def publisher(producer: AIOKafkaProducer) -> Callable[[str, bytes, bytes], Awaitable[None]]:
    async def publish(topic: str, key: bytes, value: bytes) -> None:
        await (await producer.send(topic, value=value, key=key))
    return publish


async def test_when_the_event_cannot_be_published_nothing_is_switched() -> None:
    deployment = Deployment()  # its topics are never created: the broker refuses the send
    settings = deployment.settings
    store = RedisStore.from_settings(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=2000)
    await producer.start()
    try:
        await store.upsert_subscription(make_subscription(subscription_id="sub-1"))
        switcher = PaygSwitcher(store, publisher(producer), settings.topics.subscription_events,
                                now_ms)
        try:
            await switcher.switch("sub-1", True, "alice", "owner")
        except EventNotRecorded:
            pass
        else:
            raise AssertionError("the switch went through without its audit event")
        snapshot = await store.snapshot("sub-1", now_ms())
        assert snapshot is not None and snapshot.payg_enabled is False
    finally:
        await producer.stop()
        await store.close()


async def test_a_published_switch_is_applied_by_the_worker_even_if_the_api_never_did() -> None:
    """Step 3 of the switch failing (Redis down after the publish) leaves the event on the
    topic; the subscriptions agent applies it, because its revision is newer."""
    deployment = Deployment()
    settings = deployment.settings
    store = RedisStore.from_settings(settings)
    try:
        async with running_worker(deployment):
            await store.upsert_subscription(make_subscription(subscription_id="sub-1"))
            reserved = await store.reserve_payg_revision("sub-1")
            assert reserved == (False, 1)
            event = payg_changed("sub-1", True, False, 1, "alice", "owner", now_ms())
            await produce(settings, settings.topics.subscription_events,
                          [(b"sub-1", orjson.dumps(event))])
            deadline = time.monotonic() + 30
            while True:
                snapshot = await store.snapshot("sub-1", now_ms())
                assert snapshot is not None
                if snapshot.payg_enabled:
                    break
                assert time.monotonic() < deadline, "the worker never applied the event"
                await asyncio.sleep(0.2)
            # a later switch through the service stands: the old event, met again, is older
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
            await producer.start()
            try:
                switcher = PaygSwitcher(store, publisher(producer),
                                        settings.topics.subscription_events, now_ms)
                switched = await switcher.switch("sub-1", False, "bob", "contributor")
                assert switched is not None and switched.applied and switched.revision == 2
            finally:
                await producer.stop()
            await produce(settings, settings.topics.subscription_events,
                          [(b"sub-1", orjson.dumps(event)), (b"sub-1", b"sentinel")])
            # the sentinel's dead letter says the agent got past the replayed event
            await consume(settings, [settings.topics.dlq],
                          lambda seen: any(d["value"] == "sentinel"
                                           for d in seen[settings.topics.dlq]))
            snapshot = await store.snapshot("sub-1", now_ms())
            assert snapshot is not None and snapshot.payg_enabled is False
            trail = [orjson.loads(m.value) for m in await read_to_end(
                settings.kafka_bootstrap, [settings.topics.subscription_events])
                if m.value.startswith(b'{"type":"payg.changed"')]
            assert [(e["revision"], e["enabled"]) for e in trail] == [
                (1, True), (2, False), (1, True)]
    finally:
        await store.close()
