"""`RATER_CDR_CONSUMER=off`: a worker that decides and serves the API but rates no CDRs,
so authorization can run on workers of its own while others work off a CDR backlog."""

from __future__ import annotations

import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from rater.kafka import group_members
from rater.rating.clock import format_ms
from rater.store import RedisStore
from tests.builders import attempt_doc, cdr_doc, make_subscription
from tests.integration.harness import Deployment, consume, produce, running_worker


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False)
    await probe.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        probe.assign(assigned)
        return sum((await probe.end_offsets(assigned)).values())
    finally:
        await probe.stop()


async def test_an_api_only_worker_decides_but_leaves_cdrs_alone() -> None:
    deployment = Deployment(extra_env={"RATER_CDR_CONSUMER": "off"})
    settings = deployment.settings
    parts = deployment.partitions
    store = RedisStore.from_settings(settings)
    try:
        async with running_worker(deployment) as worker:
            await store.upsert_subscription(make_subscription(subscription_id="sub-1"))
            started_at = format_ms(int(time.time() * 1000) - 120_000)
            cdr = cdr_doc(call_id="call-1", subscription_id="sub-1", started_at=started_at)
            assert await produce(settings, settings.topics.cdr,
                                 [(b"sub-1", orjson.dumps(cdr))]) == 1
            attempt = attempt_doc(attempt_id="att-1", subscription_id="sub-1")
            await produce(settings, settings.topics.attempts,
                          [(b"sub-1", orjson.dumps(attempt))])
            seen = await consume(settings, [settings.topics.decisions],
                                 lambda s: len(s[settings.topics.decisions]) >= 1)
            decision = seen[settings.topics.decisions][0]
            assert (decision["attempt_id"], decision["decision"]) == ("att-1", "permit")
            # no consumer of calls.cdr exists: the direct consumer's group has no member,
            # and the Faust consumer owns only the attempts and subscription-events
            # partitions (its readiness counts what it was assigned, the group settled)
            members = await group_members(settings.kafka_bootstrap,
                                          [settings.cdr_group, settings.app_id])
            assert members[settings.cdr_group] == 0 and members[settings.app_id] == 1
            readiness = orjson.loads(worker.get("/readyz"))
            assert readiness["assigned_partitions"] == 2 * parts
            assert await end_offsets(settings.kafka_bootstrap, settings.topics.rated, parts) == 0
            assert await end_offsets(settings.kafka_bootstrap, settings.topics.cdr, parts) == 1
            snapshot = await store.snapshot("sub-1", int(time.time() * 1000))
            assert snapshot is not None
            assert snapshot.zones["domestic"].used_included_s == 0
    finally:
        await store.close()
