"""The direct consumer's overlap: a batch's Redis call must be on its way to Redis before
the worker turns to the CPU work of the neighbouring batches (rater.agents.cdr_consumer).
Without it Redis and the worker take turns, and throughput is their sum, not their max."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import redis

from rater.agents.cdr_consumer import _let_request_out
from rater.messages import SourceRecord
from rater.service.rating import CdrBatchRater
from rater.store import RedisStore
from tests.builders import DEFAULT_STARTED_AT, cdr_doc, make_subscription, ms
from tests.integration.conftest import stack_settings


async def test_a_started_rating_call_reaches_redis_before_the_work_after_it() -> None:
    settings = stack_settings(app_id=f"t{uuid.uuid4().hex[:10]}")
    store = RedisStore.from_settings(settings)
    watcher = redis.Redis.from_url(settings.redis_url)
    try:
        await store.upsert_subscription(make_subscription(subscription_id="sub-1"))
        rater = CdrBatchRater(store, settings, clock=lambda: ms(DEFAULT_STARTED_AT) + 60_000)
        records = [SourceRecord(settings.topics.cdr, 0, i, b"sub-1",
                                orjson.dumps(cdr_doc(call_id=f"call-{i}")))
                   for i in range(200)]
        # the script's first call loads it (NOSCRIPT, SCRIPT LOAD, EVALSHA: round trips);
        # the consumer's steady state is one EVALSHA per batch
        unknown = orjson.dumps(cdr_doc(subscription_id="sub-unknown"))
        await rater.rate([SourceRecord(settings.topics.cdr, 0, 0, b"sub-unknown", unknown)])
        batch = rater.prepare(records)
        call = asyncio.ensure_future(rater.call_redis(batch))
        await _let_request_out()
        # the synchronous CPU work that follows in the consumer: the event loop is busy,
        # so only a request already written to the socket can be rated meanwhile
        deadline = time.monotonic() + 5.0
        rated = 0
        while time.monotonic() < deadline:
            rated = sum(watcher.hlen(key)
                        for key in watcher.scan_iter(f"{settings.key_prefix}:*:c:*"))
            if rated == 200:
                break
            time.sleep(0.01)
        assert rated == 200, "the Redis call was still waiting for the event loop"
        output = rater.finish(batch, await call)
        assert output.tally.outcomes["included"] == 10  # the pool: 10 one-minute calls
    finally:
        watcher.close()
        await store.close()
