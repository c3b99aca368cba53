"""Nothing lost, nothing doubled across rebalances of the direct CDR consumer.

`python -m benchmarks.rebalance_check [--cdrs N]`: a backlog is produced, worker A
starts, worker B joins the group while A is rating (a rebalance) and leaves again
before the backlog is done (another one). Every output topic must then hold exactly
what the in-process rating of the same stream produced: same counts, same rated
calls (ids, outcomes, seconds, amounts), same dead-letter reasons. Bounded: about a
minute, every step with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from benchmarks import data as datagen
from benchmarks import kafka_io, pipeline, redis_step
from rater.config import Settings
from rater.store import RedisStore
from tests.integration.harness import Worker


async def check(cdrs: int, subs: int, mode: str) -> dict[str, object]:
    settings = Settings.from_env()
    data = datagen.generate(cdrs, subs, seed=11)
    prefix = f"bench-rb-{uuid.uuid4().hex[:8]}"
    reference = redis_step.store_for(settings, prefix)
    try:
        await redis_step.load_subscriptions(reference, data.subscriptions)
        expected = await redis_step.rating_step(reference, settings, data, 500, keep=True)
    finally:
        await redis_step.delete_prefix(reference.client, prefix)
        await reference.close()
    deployment = pipeline.rater_deployment(6, mode, 500, {})
    dsettings = deployment.settings
    topics = dsettings.topics
    store = RedisStore.from_settings(dsettings)
    base = settings.topics
    want = {topics.rated: expected.per_topic[base.rated],
            topics.charges: expected.per_topic[base.charges],
            topics.alerts: expected.per_topic[base.alerts],
            topics.dlq: expected.per_topic[base.dlq]}
    first = Worker(deployment)
    try:
        await deployment.create_topics()
        await redis_step.load_subscriptions(store, data.subscriptions)
        await kafka_io.produce_all(dsettings.kafka_bootstrap, topics.cdr, data.records)
        first.start(wait_ready=False)
        await asyncio.sleep(2.0)
        second = Worker(deployment).start(wait_ready=False)  # joins: a rebalance
        await asyncio.sleep(9.0)
        second.stop()  # leaves: another rebalance
        await kafka_io.wait_for_counts(
            dsettings.kafka_bootstrap, list(want),
            lambda t: all(t[k] >= v for k, v in want.items()), timeout=300)
        await asyncio.sleep(3.0)  # anything doubled would arrive now
        totals, _ = await kafka_io.wait_for_counts(dsettings.kafka_bootstrap, list(want),
                                                   lambda t: True, timeout=10)
        got = await kafka_io.read_all(dsettings.kafka_bootstrap, list(want), totals)
        return pipeline.verify(got, topics, want, expected)
    finally:
        first.stop()
        await redis_step.delete_prefix(store.client, dsettings.key_prefix)
        await store.close()
        await kafka_io.delete_topics(dsettings.kafka_bootstrap,
                                     topics.cdr.removesuffix("calls.cdr"))
        pipeline.drop_faust_datadir(dsettings.app_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cdrs", type=int, default=200_000)
    parser.add_argument("--subs", type=int, default=5_000)
    parser.add_argument("--mode", default="direct", choices=("direct", "faust"))
    args = parser.parse_args()
    print(asyncio.run(check(args.cdrs, args.subs, args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
