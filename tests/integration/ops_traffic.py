"""A known set of 40 CDRs whose metric values are worked out by hand, for the
operations tests (live Prometheus, live /metrics, JSON logs).

Two subscriptions, increment 60/60, one licence each:

* `ops-payg`: 10 domestic / 1 international minute, PAYG on, EUR, 0.025 / 0.15
  per minute;
* `ops-off`: 5 domestic / 0 international minutes, PAYG off, USD.

Phase 1 (3 CDRs): `ops-off` domestic 90 s calls (bill 120 s each) off-d-1..3 —
included, included, exhausted (60 s included + 60 s unbilled).

Phase 2 (37 CDRs):

* `ops-payg` domestic 61 s calls payg-d-01..20 (bill 120 s): 5 fill the 600 s
  pool (included), 15 are overage (0.05 EUR each);
* `ops-payg` international 30 s calls payg-i-1..2 (bill 60 s): included, overage
  (0.15 EUR);
* `ops-payg` 3 inbound and 1 emergency call: free;
* `ops-off` off-d-4..5 (90 s): blocked, 120 s unbilled each; off-i-1
  international 10 s: blocked (pool 0), 60 s unbilled;
* two exact replays (payg-d-20, off-d-1): duplicate; the first re-emits its
  charge, so `rater_overage_charges_total` counts it (replays included);
* six dead letters: two invalid, unknown_subscription, period_closed,
  future_timestamp, conflicting_duplicate (payg-d-01 with another duration).

Thresholds: 80 % and 100 % of ops-payg domestic (calls 4 and 5), of ops-payg
international (both by payg-i-1), of ops-off domestic (calls 2 and 3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from rater.cli.inputs import upsert_events
from rater.config import Settings
from rater.rating.clock import format_ms
from rater.store import RedisStore
from tests.builders import cdr_doc, subscription_doc
from tests.integration.harness import consume, produce

PAYG, OFF, GHOST = "ops-payg", "ops-off", "ops-ghost"

Record = tuple[bytes | None, bytes]

# ---- the hand-worked expectations (see the module docstring) ----------------------------
PHASE1_OUTCOMES = {"included": 2, "exhausted": 1}
PHASE1_SECONDS = {("domestic", "included"): 300, ("domestic", "unbilled"): 60}

OUTCOMES = {"included": 8, "overage": 16, "free": 4, "exhausted": 1, "blocked": 3,
            "duplicate": 2}
SECONDS = {
    ("domestic", "included"): 900, ("domestic", "overage"): 1800,
    ("domestic", "unbilled"): 300, ("international", "included"): 60,
    ("international", "overage"): 60, ("international", "unbilled"): 60,
}
DEAD_LETTERS = {"invalid": 2, "unknown_subscription": 1, "period_closed": 1,
                "future_timestamp": 1, "conflicting_duplicate": 1}
CHARGES = 17
AMOUNT = {"EUR": 0.9}
THRESHOLD_ALERTS = {"80": 3, "100": 3}
SUBSCRIPTION_EVENTS = {"subscription.upserted": 2}
RATED_RECORDS = 34  # 32 first ratings + 2 re-emitted replays
DEAD_TOTAL = sum(DEAD_LETTERS.values())
CDR_COUNT = 40


def subscription_docs() -> list[dict[str, Any]]:
    return [
        subscription_doc(subscription_id=PAYG, billing_account_id="ops-ba-1", licenses=1,
                         domestic_minutes=10, international_minutes=1, domestic_rate="0.025",
                         international_rate="0.15", increment="60/60", payg=True,
                         currency="EUR"),
        subscription_doc(subscription_id=OFF, billing_account_id="ops-ba-2", licenses=1,
                         domestic_minutes=5, international_minutes=0, domestic_rate="0.03",
                         international_rate="0.2", increment="60/60", payg=False,
                         currency="USD"),
    ]


@dataclass
class Traffic:
    phase1: list[Record]
    phase2: list[Record]
    ids: set[str] = field(default_factory=set)
    # (reason, subscription_id or None, call_id or None) of every dead letter
    dead_letters: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    @property
    def records(self) -> list[Record]:
        return self.phase1 + self.phase2


def build_traffic(now: int) -> Traffic:
    at = format_ms(now - 120_000)
    ids: set[str] = {PAYG, OFF, GHOST, "ops-ba-1", "ops-ba-2"}

    def cdr(call_id: str, sub: str, user: str, duration: int, **more: Any) -> dict[str, Any]:
        ids.update((call_id, user))
        doc: dict[str, Any] = cdr_doc(call_id=call_id, subscription_id=sub, user_id=user,
                                      started_at=more.pop("started_at", at),
                                      duration_s=duration, **more)
        return doc

    def rec(doc: dict[str, Any]) -> Record:
        return doc["subscription_id"].encode(), orjson.dumps(doc)

    phase1 = [rec(cdr(f"off-d-{i}", OFF, "ops-user-b1", 90)) for i in (1, 2, 3)]
    payg_d = [cdr(f"payg-d-{i:02d}", PAYG, f"ops-user-a{i % 3}", 61) for i in range(1, 21)]
    phase2 = [rec(d) for d in payg_d]
    phase2 += [rec(cdr(f"payg-i-{i}", PAYG, "ops-user-a1", 30, zone="international"))
               for i in (1, 2)]
    phase2 += [rec(cdr(f"payg-in-{i}", PAYG, "ops-user-a2", 100, direction="inbound"))
               for i in (1, 2, 3)]
    phase2.append(rec(cdr("payg-sos-1", PAYG, "ops-user-a0", 45, emergency=True)))
    phase2 += [rec(cdr(f"off-d-{i}", OFF, "ops-user-b1", 90)) for i in (4, 5)]
    phase2.append(rec(cdr("off-i-1", OFF, "ops-user-b1", 10, zone="international")))
    phase2.append(phase2[19])  # exact replay of payg-d-20 (an overage call)
    phase2.append(phase1[0])  # exact replay of off-d-1 (an included call)
    ids.update(("bad-types", "late-1", "ahead-1", "ghost-1"))
    dead: list[tuple[Record, tuple[str, str | None, str | None]]] = [
        ((PAYG.encode(), b"not json at all"), ("invalid", PAYG, None)),
        ((OFF.encode(), b'{"call_id": "bad-types", "subscription_id": 7}'),
         ("invalid", OFF, "bad-types")),
        (rec(cdr("ghost-1", GHOST, "ops-user-g", 60)), ("unknown_subscription", GHOST, "ghost-1")),
        (rec(cdr("late-1", OFF, "ops-user-b1", 60, started_at=format_ms(now - 70 * 86_400_000))),
         ("period_closed", OFF, "late-1")),
        (rec(cdr("ahead-1", OFF, "ops-user-b1", 60, started_at=format_ms(now + 3_600_000))),
         ("future_timestamp", OFF, "ahead-1")),
        (rec(dict(payg_d[0], duration_s=62)), ("conflicting_duplicate", PAYG, "payg-d-01")),
    ]
    phase2 += [record for record, _ in dead]
    assert len(phase1) + len(phase2) == CDR_COUNT
    return Traffic(phase1, phase2, ids, [expected for _, expected in dead])


async def load_subscriptions(settings: Settings, timeout: float = 30.0) -> None:
    """Publish the two subscriptions and wait until the worker has them in Redis."""
    docs = subscription_docs()
    await produce(settings, settings.topics.subscription_events, upsert_events(docs))
    store = RedisStore.from_settings(settings)
    deadline = time.monotonic() + timeout
    try:
        for doc in docs:
            while await store.snapshot(doc["subscription_id"], int(time.time() * 1000)) is None:
                assert time.monotonic() < deadline, f"{doc['subscription_id']} never reached Redis"
                await asyncio.sleep(0.1)
    finally:
        await store.close()


async def drive(settings: Settings, records: Sequence[Record], rated: int, dead: int,
                timeout: float = 60.0) -> dict[str, list[Any]]:
    """Produce `records` to the CDR topic; wait until the output topics hold `rated`
    rated calls and `dead` dead letters in all (counting from the beginning)."""
    topics = settings.topics
    await produce(settings, topics.cdr, records)
    return await consume(
        settings, [topics.rated, topics.dlq],
        lambda s: len(s[topics.rated]) >= rated and len(s[topics.dlq]) >= dead,
        timeout=timeout,
    )


async def drive_all(settings: Settings) -> Traffic:
    """Subscriptions in Redis, then the whole traffic rated and dead-lettered."""
    await load_subscriptions(settings)
    traffic = build_traffic(int(time.time() * 1000))
    await drive(settings, traffic.records, rated=RATED_RECORDS, dead=DEAD_TOTAL)
    return traffic


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Scrape:
    """One `GET /metrics` answer: families (name -> type) and samples."""

    text: str
    types: dict[str, str]
    samples: list[Sample]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        types: dict[str, str] = {}
        samples: list[Sample] = []
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            samples += [Sample(s.name, dict(s.labels), float(s.value)) for s in family.samples]
        return cls(text, types, samples)

    def values(self, name: str, *label_names: str) -> dict[Any, float]:
        """{label value (a tuple when several names): value} of the samples called `name`."""
        out: dict[Any, float] = {}
        for sample in self.samples:
            if sample.name == name:
                key = tuple(sample.labels[n] for n in label_names)
                out[key[0] if len(key) == 1 else key] = sample.value
        return out

    def value(self, name: str) -> float:
        found = [s.value for s in self.samples if s.name == name and not s.labels]
        assert len(found) == 1, f"{name}: {len(found)} unlabelled samples"
        return found[0]
