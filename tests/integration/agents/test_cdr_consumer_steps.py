"""A rating batch in steps (CdrBatchRater.prepare_steps / finish_steps, run by the direct
consumer between event-loop turns): exactly the records of the batch rated in one go, and
the event loop serves other work between the steps (the HTTP API shares it)."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from rater.agents.cdr_consumer import _stepped, _Turns
from rater.messages import SourceRecord
from rater.service.rating import CdrBatchRater
from rater.store import RedisStore
from tests.builders import DEFAULT_STARTED_AT, cdr_doc, make_subscription, ms
from tests.integration.conftest import stack_settings


def batch(topic: str) -> list[SourceRecord]:
    """Calls over three subscriptions (one unknown), with replays, conflicts and junk."""
    docs: list[bytes] = []
    for i in range(240):
        sub = ("sub-1", "sub-2", "sub-unknown")[i % 3]
        docs.append(orjson.dumps(cdr_doc(call_id=f"call-{i % 200}", subscription_id=sub,
                                         duration_s=30 + i % 90 if i < 220 else 7)))
        if i % 50 == 0:
            docs.append(b"{not json")
    return [SourceRecord(topic, 0, offset, b"k", value) for offset, value in enumerate(docs)]


async def rated(step: int | None) -> list[tuple[str, bytes | None, bytes]]:
    """The batch's output records on a fresh key space: in one go, or in steps."""
    settings = stack_settings(app_id=f"t{uuid.uuid4().hex[:10]}")
    store = RedisStore.from_settings(settings)
    try:
        for sub in ("sub-1", "sub-2"):
            await store.upsert_subscription(make_subscription(subscription_id=sub, payg=True))
        rater = CdrBatchRater(store, settings, clock=lambda: ms(DEFAULT_STARTED_AT) + 600_000)
        records = batch(settings.topics.cdr)
        if step is None:
            output = await rater.rate(records)
        else:
            prepared = await _stepped(rater.prepare_steps(records, step), _Turns())
            replies = await rater.call_redis(prepared)
            output = await _stepped(rater.finish_steps(prepared, replies, step), _Turns())
        return [(e.topic, e.key, e.value) for e in output.emits]
    finally:
        keys = [k async for k in store.client.scan_iter(f"{settings.key_prefix}*")]
        if keys:
            await store.client.delete(*keys)
        await store.close()


async def test_a_batch_rated_in_steps_gives_exactly_the_records_of_one_go() -> None:
    in_one_go = await rated(None)
    assert len(in_one_go) > 240  # rated calls, charges, alerts and dead letters
    assert await rated(7) == in_one_go
    assert await rated(1000) == in_one_go


async def test_the_event_loop_serves_other_work_between_the_steps() -> None:
    settings = stack_settings(app_id=f"t{uuid.uuid4().hex[:10]}")
    store = RedisStore.from_settings(settings)
    turns = 0
    done = asyncio.Event()

    async def other_work() -> None:  # e.g. an HTTP request handler: one turn at a time
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    try:
        rater = CdrBatchRater(store, settings, clock=lambda: ms(DEFAULT_STARTED_AT) + 600_000)
        records = batch(settings.topics.cdr)
        neighbour = asyncio.ensure_future(other_work())
        await asyncio.sleep(0)
        before = turns
        # turns of no length: the loop is handed back after every step
        await _stepped(rater.prepare_steps(records, 25), _Turns(0.0, 0.0))
        # 245 records in steps of 25: ten steps, nine pauses in between
        assert turns - before >= 9
        done.set()
        await neighbour
    finally:
        await store.close()
