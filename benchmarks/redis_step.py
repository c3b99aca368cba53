"""Phases without Kafka: the Redis rating step (batch Lua vs one call per CDR), the whole
in-process rating step (decode + Redis + output records) by batch size, and Redis memory
per rated CDR. Every measurement uses its own fresh key prefix and deletes it afterwards.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from benchmarks.data import DataSet, call_id
from rater.config import Settings
from rater.messages import SourceRecord
from rater.rating.clock import RatingClock, now_ms
from rater.records import (
    Cdr,
    InvalidRecord,
    cdr_fingerprint,
    decode_cdr,
    subscription_from_document,
)
from rater.service.rating import CdrBatchRater
from rater.store import RatingInput, RedisStore


def store_for(settings: Settings, prefix: str) -> RedisStore:
    return RedisStore.from_settings(settings.with_overrides(app_id=prefix))


async def load_subscriptions(store: RedisStore, docs: Sequence[dict[str, Any]]) -> None:
    """The same Lua upsert the worker applies, pipelined 1000 at a time."""
    for start in range(0, len(docs), 1000):
        await store.upsert_subscriptions(
            [subscription_from_document(doc) for doc in docs[start:start + 1000]])


async def delete_prefix(client: Any, prefix: str) -> int:
    """UNLINK every key of one benchmark prefix (never anything else)."""
    deleted = 0
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


def decoded_inputs(data: DataSet) -> list[RatingInput]:
    inputs = []
    for _, value in data.records:
        try:
            cdr = decode_cdr(value)
        except InvalidRecord:
            continue
        inputs.append(RatingInput(cdr, cdr_fingerprint(cdr)))
    return inputs


def _clock(settings: Settings) -> RatingClock:
    return RatingClock(now_ms(), settings.late_grace_s * 1000, settings.future_tolerance_s * 1000)


async def redis_batched(store: RedisStore, inputs: Sequence[RatingInput], batch: int,
                        settings: Settings) -> float:
    """CDRs/s through RedisStore.rate_batch: one EVALSHA per batch."""
    started = time.perf_counter()
    for i in range(0, len(inputs), batch):
        clock = _clock(settings)
        await store.rate_batch(inputs[i:i + batch], clock, clock.now_ms)
    return len(inputs) / (time.perf_counter() - started)


async def redis_per_cdr(store: RedisStore, inputs: Sequence[RatingInput], depth: int,
                        settings: Settings) -> float:
    """CDRs/s with one EVALSHA per CDR, `depth` of them per pipeline (same script, same args)."""
    started = time.perf_counter()
    for i in range(0, len(inputs), depth):
        clock = _clock(settings)
        request = store.rating_request(inputs[i:i + depth], clock, clock.now_ms,
                                       call_per_item=True)
        await store.send_rating(request, pipelined=True)
    return len(inputs) / (time.perf_counter() - started)


@dataclass
class StepResult:
    rate: float
    per_topic: Counter[str] = field(default_factory=Counter)
    rated_digest: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)


async def rating_step(store: RedisStore, settings: Settings, data: DataSet,
                      batch: int, keep: bool = False) -> StepResult:
    """CDRs/s through CdrBatchRater.rate on raw bytes: decode, Redis, output records."""
    rater = CdrBatchRater(store, settings)
    records = [SourceRecord(settings.topics.cdr, 0, i, k, v)
               for i, (k, v) in enumerate(data.records)]
    result = StepResult(0.0)
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        output = await rater.rate(records[i:i + batch])
        if keep:
            for emit in output.emits:
                result.per_topic[emit.topic] += 1
                if emit.topic == settings.topics.rated:
                    result.rated_digest[rated_key(orjson.loads(emit.value))] += 1
                elif emit.topic == settings.topics.dlq:
                    result.dead[orjson.loads(emit.value)["reason"]] += 1
    result.rate = len(records) / (time.perf_counter() - started)
    return result


def rated_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """What must be identical between two ratings of the same stream (not rated_at)."""
    return (record["subscription_id"], record["call_id"], record["period"], record["outcome"],
            record["billable_s"], record["included_s"], record["overage_s"],
            record["unbilled_s"], record["amount"], record["charge_id"])


# ------------------------------------------------------------------ memory ---


def synthetic_inputs(rnd: random.Random, subs: Sequence[dict[str, Any]], count: int,
                     now: int) -> list[RatingInput]:
    """Valid, distinct CDRs straight to RatingInput (no JSON round trip: memory is the point)."""
    out = []
    for _ in range(count):
        sub = subs[rnd.randrange(len(subs))]
        cdr = Cdr(
            call_id=call_id(rnd), subscription_id=sub["subscription_id"],
            user_id=f"user-{rnd.randrange(2 * sub['licenses'])}",
            started_at_ms=now - rnd.randrange(60_000, 6 * 3_600_000),
            duration_s=rnd.choice((0, 31, 61, 90, 185, 300, 600)),
            direction="outbound" if rnd.random() < 0.85 else "inbound",
            zone="domestic" if rnd.random() < 0.8 else "international",
            emergency=False, destination=None,
        )
        out.append(RatingInput(cdr, cdr_fingerprint(cdr)))
    return out


async def memory_per_cdr(settings: Settings, subs: Sequence[dict[str, Any]], n_cdrs: int,
                         prefix: str, batch: int = 500, seed: int = 99) -> dict[str, Any]:
    """Rate `n_cdrs` distinct CDRs, then measure what our keys hold in Redis."""
    store = store_for(settings, prefix)
    raw = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        before = int((await raw.info("memory"))["used_memory"])
        await load_subscriptions(store, subs)
        after_subs = int((await raw.info("memory"))["used_memory"])
        rnd = random.Random(seed)
        now = now_ms()
        started = time.perf_counter()
        for done in range(0, n_cdrs, batch):
            items = synthetic_inputs(rnd, subs, min(batch, n_cdrs - done), now)
            clock = _clock(settings)
            await store.rate_batch(items, clock, clock.now_ms)
        elapsed = time.perf_counter() - started
        after = int((await raw.info("memory"))["used_memory"])
        by_kind: Counter[str] = Counter()
        keys_by_kind: Counter[str] = Counter()
        encodings: Counter[str] = Counter()
        keys: list[str] = [k async for k in raw.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 2000):
            chunk = keys[start:start + 2000]
            pipe = raw.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key, samples=0)
                pipe.object("encoding", key)
            answers = await pipe.execute()
            for i, key in enumerate(chunk):
                kind = key.rsplit("}:", 1)[1].split(":", 1)[0]  # sub | p | u | c
                by_kind[kind] += int(answers[2 * i] or 0)
                keys_by_kind[kind] += 1
                encodings[f"{kind}:{answers[2 * i + 1]}"] += 1
        total = sum(by_kind.values())
        rated_bytes = total - by_kind["sub"]
        return {
            "cdrs": n_cdrs,
            "subscriptions": len(subs),
            "rate_cdrs_per_s": n_cdrs / elapsed,
            "bytes_per_cdr": rated_bytes / n_cdrs,
            "bytes_per_cdr_dedupe": by_kind["c"] / n_cdrs,
            "bytes_per_cdr_counters": (by_kind["p"] + by_kind["u"]) / n_cdrs,
            "memory_usage_bytes": dict(by_kind),
            "keys": dict(keys_by_kind),
            "encodings": dict(encodings),
            "used_memory_delta_per_cdr": (after - after_subs) / n_cdrs,
            "used_memory_delta_subs": after_subs - before,
            "note": "MEMORY USAGE (SAMPLES 0) summed over every key of the run's prefix, "
                    "subscription plan hashes excluded; used_memory delta is shared with "
                    "whatever else writes to this Redis meanwhile",
        }
    finally:
        await delete_prefix(raw, prefix)
        await raw.aclose()
        await store.close()
