"""Through the real broker: CDRs in, rated calls, charges, alerts and dead letters out.

A Faust worker runs as a subprocess against the local Kafka and Redis. The
expected records come from the reference model applied to the same input.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from rater.cli.inputs import upsert_events
from rater.rating import outputs
from rater.rating.clock import RatingClock, format_ms, now_ms
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating
from rater.records import cdr_fingerprint, decode_cdr, subscription_from_document
from rater.store import RedisStore
from tests.builders import cdr_doc, ms, subscription_doc
from tests.integration.harness import Deployment, Worker, consume, produce, running_worker

pytestmark = pytest.mark.integration

PLANS = [("60/60", 3, "0.025"), ("30/6", 2, "0.02"), ("1/1", 4, "0.0125"), ("60/1", 0, "0.5")]


def subscriptions() -> list[dict[str, Any]]:
    docs = []
    for i in range(8):
        increment, minutes, rate = PLANS[i % len(PLANS)]
        docs.append(subscription_doc(
            subscription_id=f"sub-{i}", billing_account_id=f"ba-{i % 3}", licenses=1 + i % 2,
            domestic_minutes=minutes, international_minutes=1, domestic_rate=rate,
            international_rate="0.15", increment=increment, payg=i % 2 == 0,
            currency="EUR" if i % 3 else "USD",
        ))
    return docs


def valid_cdrs(now: int, count: int = 300) -> list[dict[str, Any]]:
    rnd = random.Random(42)
    docs = []
    for i in range(count):
        docs.append(cdr_doc(
            call_id=f"call-{i:04d}", subscription_id=f"sub-{rnd.randrange(8)}",
            user_id=f"user-{rnd.randrange(4)}",
            started_at=format_ms(now - rnd.randrange(60_000, 3_600_000)),
            duration_s=rnd.choice([0, 1, 29, 31, 59, 61, 90, 120, 185, 600]),
            direction="outbound" if rnd.random() < 0.85 else "inbound",
            zone="domestic" if rnd.random() < 0.8 else "international",
            emergency=rnd.random() < 0.03,
        ))
    return docs


def malformed(now: int, first: dict[str, Any]) -> list[tuple[bytes | None, bytes, str]]:
    """(key, value, expected dead-letter reason) for every kind of bad input."""
    sub = first["subscription_id"].encode()
    conflicting = dict(first, duration_s=first["duration_s"] + 7)
    return [
        (None, b"not json at all", "invalid"),
        (sub, b'{"call_id": 5, "subscription_id": "sub-1"}', "invalid"),
        (sub, orjson.dumps(cdr_doc(call_id="huge", user_id="u" * 200_000)), "invalid"),
        (sub, orjson.dumps(cdr_doc(call_id="neg", duration_s=-1)), "invalid"),
        (sub, orjson.dumps(cdr_doc(call_id="date", started_at="2026-02-30T10:00:00Z")), "invalid"),
        (sub, orjson.dumps(cdr_doc(call_id="zone", zone="lunar")), "invalid"),
        (sub, b"\xff\xfe\x00binary", "invalid"),
        (b"nobody", orjson.dumps(cdr_doc(call_id="who", subscription_id="nobody",
                                         started_at=format_ms(now))), "unknown_subscription"),
        (sub, orjson.dumps(cdr_doc(call_id="late", subscription_id="sub-1",
                                   started_at=format_ms(now - 70 * 86_400_000))), "period_closed"),
        (sub, orjson.dumps(cdr_doc(call_id="ahead", subscription_id="sub-1",
                                   started_at=format_ms(now + 3_600_000))), "future_timestamp"),
        (first["subscription_id"].encode(), orjson.dumps(conflicting), "conflicting_duplicate"),
    ]


@pytest.fixture(scope="module", params=["direct", "faust"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """Both CDR consumers: the direct aiokafka one (default) and the Faust agent."""
    yield Deployment(partitions=4, extra_env={"RATER_CDR_CONSUMER": request.param})


@pytest.fixture(scope="module")
async def worker(deployment: Deployment) -> AsyncIterator[Worker]:
    async with running_worker(deployment) as running:
        yield running


@pytest.fixture(scope="module")
async def store(deployment: Deployment) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore.from_settings(deployment.settings)
    yield redis_store
    await redis_store.close()


def period_start_ms(period: str) -> int:
    """An instant inside the period named `period` (its first millisecond, UTC)."""
    return ms(f"{period}T00:00:00Z")


def strip_time(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("rated_at", "at")}


async def test_cdrs_through_kafka_are_rated_exactly(
    deployment: Deployment, worker: Worker, store: RedisStore
) -> None:
    settings = deployment.settings
    topics = settings.topics
    subs = subscriptions()
    await produce(settings, topics.subscription_events, upsert_events(subs))
    start = now_ms()
    cdrs = valid_cdrs(start)
    bad = malformed(start, cdrs[0])
    records = [(d["subscription_id"].encode(), orjson.dumps(d)) for d in cdrs]
    # interleave the bad ones among the valid records
    mixed: list[tuple[bytes | None, bytes]] = []
    for i, record in enumerate(records):
        mixed.append(record)
        if i % 27 == 5 and bad:
            key, value, _ = bad.pop(0)
            mixed.append((key, value))
    mixed += [(k, v) for k, v, _ in bad]
    # subscriptions must be in Redis before CDRs are rated
    await consume(settings, [topics.subscription_events],
                  lambda s: len(s[topics.subscription_events]) >= len(subs))
    for doc in subs:
        for _ in range(100):
            if await store.snapshot(doc["subscription_id"], start) is not None:
                break
            await asyncio.sleep(0.1)
    await produce(settings, topics.cdr, mixed)

    want_dead = 11
    # the reference model, fed the same input in the same per-subscription order
    model = ReferenceRater()
    for doc in subs:
        model.upsert(subscription_from_document(doc))
    expected_rated, expected_charges, expected_alerts = {}, {}, {}
    clock = RatingClock(now_ms())
    for doc in cdrs:
        cdr = decode_cdr(orjson.dumps(doc))
        result = model.rate(cdr, cdr_fingerprint(cdr), clock, clock.now_ms)
        assert isinstance(result, CallRating)
        rated, charge = outputs.call_records(cdr, result)
        expected_rated[cdr.call_id] = strip_time(rated)
        if charge:
            expected_charges[charge["charge_id"]] = strip_time(charge)
        for crossing in result.alerts:
            alert = outputs.threshold_alert(cdr.subscription_id, crossing)
            expected_alerts[alert["alert_id"]] = strip_time(alert)

    # every topic up to its expected count: the topics are read side by side, so the
    # rated calls can be complete while the last charges or alerts are still unread
    seen = await consume(
        settings, [topics.rated, topics.charges, topics.alerts, topics.dlq],
        lambda s: (len(s[topics.rated]) >= len(cdrs) and len(s[topics.dlq]) >= want_dead
                   and len(s[topics.charges]) >= len(expected_charges)
                   and len(s[topics.alerts]) >= len(expected_alerts)),
        timeout=90,
    )

    rated = {r["call_id"]: strip_time(r) for r in seen[topics.rated]}
    assert len(seen[topics.rated]) == len(cdrs)
    assert rated == expected_rated
    charges = {c["charge_id"]: strip_time(c) for c in seen[topics.charges]}
    assert charges == expected_charges
    assert len(charges) > 10
    assert all(isinstance(c["amount"], str) and len(c["amount"].split(".")[1]) == 6
               for c in seen[topics.charges])
    assert {a["alert_id"]: strip_time(a) for a in seen[topics.alerts]} == expected_alerts
    reasons = Counter(d["reason"] for d in seen[topics.dlq])
    assert reasons == Counter(reason for _, _, reason in malformed(start, cdrs[0]))
    for letter in seen[topics.dlq]:
        assert letter["source_topic"] == topics.cdr and letter["detail"]
        assert isinstance(letter["offset"], int) and isinstance(letter["partition"], int)
    binary = [d for d in seen[topics.dlq] if d.get("value_encoding") == "base64"]
    assert len(binary) == 1

    # counters in Redis equal the model's, read in each counter's own period: CDRs up to
    # an hour old fall in the previous period during the first hour of a period
    async def counters_in_redis() -> dict[tuple[str, str], Any]:
        found = {}
        for sub_id, period, _ in model.counters:
            snapshot = await store.snapshot(sub_id, period_start_ms(period))
            assert snapshot is not None and snapshot.period == period
            found[(sub_id, period)] = snapshot
        return found

    before = await counters_in_redis()
    for (sub_id, period, zone), counters in model.counters.items():
        assert before[(sub_id, period)].zones[zone] == counters, (sub_id, period, zone)

    # replaying the same file changes no counter and re-emits identical records
    await produce(settings, topics.cdr, records)
    again = await consume(settings, [topics.rated, topics.charges],
                          lambda s: (len(s[topics.rated]) >= 2 * len(cdrs)
                                     and len(s[topics.charges]) >= 2 * len(charges)),
                          timeout=90)
    copies: dict[str, list[dict[str, Any]]] = {}
    for record in again[topics.rated]:
        copies.setdefault(record["call_id"], []).append(record)
    assert len(copies) == len(cdrs)
    assert all(len(c) == 2 and c[0] == c[1] for c in copies.values())  # identical, rated_at too
    charge_copies: dict[str, list[dict[str, Any]]] = {}
    for charge in again[topics.charges]:
        charge_copies.setdefault(charge["charge_id"], []).append(charge)
    assert set(charge_copies) == set(charges)
    assert all(len(c) == 2 and c[0] == c[1] for c in charge_copies.values())
    assert await counters_in_redis() == before
