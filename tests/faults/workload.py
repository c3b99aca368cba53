"""A fault run's input, what the reference model says must come out, and the checks.

`Workload` is a seeded mix of subscriptions and CDRs with exact duplicates
(replays that must change nothing) and conflicting duplicates (dead letters)
mixed in. `expect()` applies the reference model once to the input, in the
order each subscription's partition carries it. `Outputs.read()` drains the
output topics and `verify()` turns every end-state promise of SPEC §9 into an
assertion:

* each subscription's counters in Redis (RedisStore.snapshot) equal the model's;
* every input record is in calls.rated (as often as it was sent) or calls.dlq;
* no call_id, charge_id or alert_id appears with two different contents;
* the distinct rated calls, charges and alerts equal the model's, and the sum of
  distinct charges (Decimal) equals the model's per currency.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from rater.cli.inputs import upsert_events
from rater.config import Settings
from rater.kafka import TopicReader
from rater.rating import outputs
from rater.rating.clock import RatingClock, format_ms, now_ms
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating, Rejection, ZoneCounters
from rater.records import (
    InvalidRecord,
    Zone,
    cdr_fingerprint,
    decode_cdr,
    subscription_from_document,
)
from rater.store import RedisStore
from tests.builders import cdr_doc, ms, subscription_doc

Record = tuple[bytes | None, bytes]
PLANS = [("60/60", "0.025", "0.15"), ("30/6", "0.0133", "0.2"), ("1/1", "0.012345", "1.999999"),
         ("60/1", "0.5", "0.333333"), ("6/6", "0.01", "0.07")]
DURATIONS = [0, 1, 5, 29, 31, 59, 60, 61, 90, 119, 121, 185, 300, 600, 1800]


def subscriptions(seed: int, count: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    docs = []
    for i in range(count):
        increment, domestic_rate, international_rate = PLANS[i % len(PLANS)]
        docs.append(subscription_doc(
            subscription_id=f"s{seed}-{i:03d}", billing_account_id=f"ba-{i % 7}",
            licenses=rnd.randint(0, 3) if i % 11 else 0,
            domestic_minutes=rnd.choice([10, 60, 300, 1000, 20_000]),
            international_minutes=rnd.choice([0, 5, 60, 5000]),
            domestic_rate=domestic_rate, international_rate=international_rate,
            increment=increment, anchor_day=rnd.randint(1, 31), payg=i % 3 != 0,
            currency="EUR" if i % 4 else "USD",
        ))
    return docs


@dataclass
class Workload:
    """Subscriptions and the CDR stream, in the order it is produced."""

    subs: list[dict[str, Any]]
    records: list[Record]
    unique_calls: int
    duplicates: int
    conflicts: int
    junk: int = 0
    created_ms: int = field(default_factory=now_ms)

    @classmethod
    def generate(cls, seed: int, calls: int, subs: int = 60, dup_ratio: float = 0.08,
                 conflict_ratio: float = 0.004) -> Workload:
        rnd = random.Random(seed)
        docs = subscriptions(seed, subs)
        ids = [d["subscription_id"] for d in docs]
        start = now_ms()
        records: list[Record] = []
        sent: list[Record] = []
        duplicates = conflicts = 0
        for i in range(calls):
            sub = rnd.choice(ids)
            doc = cdr_doc(
                call_id=f"c{seed}-{i:06d}", subscription_id=sub,
                user_id=f"u{rnd.randrange(6)}",
                started_at=format_ms(start - rnd.randrange(60_000, 3_000_000)),
                duration_s=rnd.choice(DURATIONS),
                direction="outbound" if rnd.random() < 0.85 else "inbound",
                zone="domestic" if rnd.random() < 0.8 else "international",
                emergency=True if rnd.random() < 0.02 else None,
                destination=f"+4930{rnd.randrange(10**6, 10**7)}" if rnd.random() < 0.5 else None,
            )
            record = (sub.encode(), orjson.dumps(doc))
            records.append(record)
            sent.append(record)
            if sent and rnd.random() < dup_ratio:  # an earlier CDR, sent again unchanged
                records.append(rnd.choice(sent))
                duplicates += 1
            if rnd.random() < conflict_ratio:  # an earlier call_id with other content
                key, value = rnd.choice(sent)
                other = orjson.loads(value)
                other["duration_s"] = (other["duration_s"] + 7) % 86_400
                records.append((key, orjson.dumps(other)))
                conflicts += 1
        return cls(docs, records, calls, duplicates, conflicts, created_ms=start)

    def subscription_events(self) -> list[Record]:
        return upsert_events(self.subs)


def strip_time(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("rated_at", "at")}


@dataclass
class Expected:
    """The reference model applied once to the distinct input."""

    rated: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    sends: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead: Counter[bytes] = field(default_factory=Counter)
    dead_reason: dict[bytes, str] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: dict[tuple[str, str, Zone], ZoneCounters] = field(default_factory=dict)
    users: dict[tuple[str, str, str, Zone], int] = field(default_factory=dict)
    amounts: dict[str, Decimal] = field(default_factory=dict)

    @property
    def valid_records(self) -> int:
        return sum(self.sends.values())


def expect(subs: Sequence[dict[str, Any]], records: Iterable[Record]) -> Expected:
    model = ReferenceRater()
    for doc in subs:
        model.upsert(subscription_from_document(doc))
    clock = RatingClock(now_ms())
    out = Expected()
    for _, value in records:
        try:
            cdr = decode_cdr(value)
        except InvalidRecord:
            out.dead[value] += 1
            out.dead_reason[value] = "invalid"
            continue
        result = model.rate(cdr, cdr_fingerprint(cdr), clock, clock.now_ms)
        if isinstance(result, Rejection):
            out.dead[value] += 1
            out.dead_reason[value] = result.reason
            continue
        assert isinstance(result, CallRating)
        key = (cdr.subscription_id, cdr.call_id)
        out.sends[key] += 1
        if result.replayed:
            continue
        rated, charge = outputs.call_records(cdr, result)
        out.rated[key] = strip_time(rated)
        if charge is not None:
            out.charges[charge["charge_id"]] = strip_time(charge)
            out.amounts[charge["currency"]] = (
                out.amounts.get(charge["currency"], Decimal(0)) + Decimal(charge["amount"]))
        for crossing in result.alerts:
            alert = outputs.threshold_alert(cdr.subscription_id, crossing)
            out.alerts[alert["alert_id"]] = strip_time(alert)
    out.counters = dict(model.counters)
    out.users = dict(model.user_seconds)
    return out


# --------------------------------------------------------------- Kafka I/O ---

async def produce(settings: Settings, topic: str, records: Sequence[Record],
                  pace: Callable[[int], Any] | None = None, chunk: int = 2000) -> int:
    """Produce in order with an idempotent producer (no reordering on retries).

    `pace(i)` is awaited after each chunk, so a test can act while input flows.
    """
    out = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                           enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024,
                           max_request_size=2 * 1024 * 1024, request_timeout_ms=120_000)
    await out.start()
    try:
        for begin in range(0, len(records), chunk):
            pending = [await out.send(topic, key=k, value=v)
                       for k, v in records[begin:begin + chunk]]
            await asyncio.gather(*pending)
            if pace is not None:
                await pace(begin + chunk)
    finally:
        await out.stop()
    return len(records)


@dataclass
class Outputs:
    rated: list[dict[str, Any]] = field(default_factory=list)
    charges: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dlq: list[dict[str, Any]] = field(default_factory=list)

    def rated_sends(self) -> Counter[tuple[str, str]]:
        return Counter((r["subscription_id"], r["call_id"]) for r in self.rated)

    def dead_values(self) -> Counter[bytes]:
        return Counter(dead_value(d) for d in self.dlq)

    def complete(self, expected: Expected) -> bool:
        sends = self.rated_sends()
        if any(sends[k] < n for k, n in expected.sends.items()):
            return False
        dead = self.dead_values()
        return all(dead[v] >= n for v, n in expected.dead.items())

    def missing(self, expected: Expected) -> tuple[int, int]:
        """(rated calls, dead letters) the input still lacks in these outputs."""
        sends, dead = self.rated_sends(), self.dead_values()
        return (sum(max(0, n - sends[k]) for k, n in expected.sends.items()),
                sum(max(0, n - dead[v]) for v, n in expected.dead.items()))

    @classmethod
    async def read(cls, settings: Settings, expected: Expected | None, timeout: float,
                   progress: Callable[[Outputs], Any] | None = None,
                   quiet_s: float = 5.0) -> Outputs:
        """Read the output topics from the start until `expected` is covered (or fail).

        With `expected=None` (a run that may lose data): until the rater's group has
        committed all input and no output arrived for `quiet_s`.
        """
        topics = settings.topics
        names = [topics.rated, topics.charges, topics.alerts, topics.dlq]
        seen = cls()
        lists = dict(zip(names, (seen.rated, seen.charges, seen.alerts, seen.dlq), strict=True))
        deadline = time.monotonic() + timeout
        checked_at = 0
        last_new = time.monotonic()

        def take(batch: list[Any]) -> None:
            for m in batch:
                lists[m.topic].append(orjson.loads(m.value))

        async with TopicReader(settings.kafka_bootstrap, names) as reader:
            while True:
                batch = await reader.batch()
                take(batch)
                total = len(seen.rated) + len(seen.dlq)
                if batch:
                    last_new = time.monotonic()
                if expected is not None:
                    if (total != checked_at or not batch) and seen.complete(expected):
                        break
                elif (time.monotonic() - last_new > quiet_s
                      and await consumer_lag(settings, topics.cdr) == 0):
                    break
                checked_at = total
                if progress is not None:
                    await progress(seen)
                if time.monotonic() > deadline:
                    rated, dead = seen.missing(expected) if expected else (-1, -1)
                    raise AssertionError(
                        f"outputs incomplete after {timeout:.0f}s: {rated} rated calls and "
                        f"{dead} dead letters missing; seen rated={len(seen.rated)} "
                        f"dlq={len(seen.dlq)}")
            # The rated calls are all there, but a batch's charges and alerts travel to
            # other partitions and can arrive later: once every input is committed (so
            # every output acknowledged), read each output partition to its end.
            await wait_lag_zero(settings, topics.cdr, max(1.0, deadline - time.monotonic()))
            take(await reader.to_end(max(1.0, deadline - time.monotonic())))
        return seen


def dead_value(letter: dict[str, Any]) -> bytes:
    if letter.get("value_encoding") == "base64":
        return base64.b64decode(letter["value"])
    return str(letter["value"]).encode()


def group_of(settings: Settings, topic: str) -> str:
    """The consumer group that commits `topic`: the Faust app's, or the direct CDR
    consumer's own (`<app_id>-cdr`, RATER_CDR_CONSUMER=direct)."""
    if topic == settings.topics.cdr and settings.cdr_consumer == "direct":
        return settings.cdr_group
    return settings.app_id


async def consumer_lag(settings: Settings, topic: str) -> int:
    """Committed lag of the rater's consumer group on `topic` (0: everything acknowledged)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_of(settings, topic))
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await consumer.end_offsets(parts)
        lag = 0
        for tp in parts:
            meta = committed.get(tp)
            lag += ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def wait_lag_zero(settings: Settings, topic: str, timeout: float,
                        interval: float = 1.0) -> float:
    """Seconds until the group's committed lag on `topic` is 0; fails after `timeout`."""
    started = time.monotonic()
    lag = -1
    while time.monotonic() - started < timeout:
        lag = await consumer_lag(settings, topic)
        if lag == 0:
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"consumer lag on {topic} still {lag} after {timeout:.0f}s")


# ------------------------------------------------------------------ checks ---

@dataclass
class Verdict:
    """Figures of one run, for the suite's report."""

    rated_records: int
    distinct_calls: int
    charges: int
    distinct_charges: int
    dead_letters: int
    redelivered: int
    amounts: dict[str, Decimal]

    def line(self) -> str:
        money = ", ".join(f"{c} {a}" for c, a in sorted(self.amounts.items()))
        return (f"{self.distinct_calls} calls rated exactly ({self.rated_records} rated records, "
                f"{self.redelivered} re-emitted beyond the input's own duplicates), "
                f"{self.distinct_charges} charges = {money}, {self.dead_letters} dead letters")


def distinct(records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any],
             what: str) -> dict[Any, dict[str, Any]]:
    """Records by id; fails when one id carries two different contents."""
    seen: dict[Any, dict[str, Any]] = {}
    clashes = []
    for record in records:
        k = key(record)
        if k in seen and seen[k] != record:
            clashes.append((seen[k], record))
        seen.setdefault(k, record)
    assert not clashes, f"{len(clashes)} {what} ids with two different contents, e.g. {clashes[0]}"
    return seen


def same(got: dict[Any, dict[str, Any]], want: dict[Any, dict[str, Any]], what: str) -> None:
    """The distinct records (without their time stamps) are the model's, or say which not."""
    got = {k: strip_time(v) for k, v in got.items()}
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    differ = [k for k in want if k in got and got[k] != want[k]]
    assert not (missing or extra or differ), (
        f"{what}: {len(missing)} missing (e.g. {[want[k] for k in missing[:1]]}), "
        f"{len(extra)} not in the model (e.g. {[got[k] for k in extra[:1]]}), "
        f"{len(differ)} different (e.g. {[(got[k], want[k]) for k in differ[:1]]})")


def period_start_ms(period: str) -> int:
    return ms(f"{period}T00:00:00Z")


async def verify(store: RedisStore, expected: Expected, seen: Outputs) -> Verdict:
    # every input record is in calls.rated (as often as sent) or in calls.dlq
    sends = seen.rated_sends()
    missing = {k: n - sends[k] for k, n in expected.sends.items() if sends[k] < n}
    assert not missing, f"{len(missing)} input CDRs never rated, e.g. {next(iter(missing))}"
    unexpected = set(sends) - set(expected.sends)
    assert not unexpected, f"rated calls that were not in the input: {list(unexpected)[:3]}"
    dead = seen.dead_values()
    lost = {v[:80]: n for v, n in expected.dead.items() if dead[v] < n}
    assert not lost, f"{len(lost)} bad records missing from calls.dlq, e.g. {next(iter(lost))!r}"
    stray = set(dead) - set(expected.dead)
    assert not stray, f"dead letters for records that should be rated: {list(stray)[:2]!r}"
    for letter in seen.dlq:
        assert letter["reason"] == expected.dead_reason[dead_value(letter)], letter["detail"]

    # no id with two different contents (re-emissions are byte-identical records)
    rated = distinct(seen.rated, lambda r: (r["subscription_id"], r["call_id"]), "call")
    charges = distinct(seen.charges, lambda c: c["charge_id"], "charge")
    alerts = distinct(seen.alerts, lambda a: a["alert_id"], "alert")

    # the distinct outputs are exactly the model's
    got_rated = {k: strip_time(v) for k, v in rated.items()}
    wrong = [k for k, v in expected.rated.items() if got_rated.get(k) != v]
    assert not wrong, (f"{len(wrong)} rated calls differ from the model, e.g. "
                       f"{got_rated.get(wrong[0])} != {expected.rated[wrong[0]]}")
    same(charges, expected.charges, "charges")
    same(alerts, expected.alerts, "alerts")
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for charge in charges.values():
        amounts[charge["currency"]] += Decimal(charge["amount"])
    assert dict(amounts) == expected.amounts, (dict(amounts), expected.amounts)

    # every subscription's counters equal the model applied once to the distinct input
    await verify_counters(store, expected)
    return Verdict(
        rated_records=len(seen.rated), distinct_calls=len(rated), charges=len(seen.charges),
        distinct_charges=len(charges), dead_letters=len(seen.dlq),
        redelivered=len(seen.rated) - expected.valid_records, amounts=dict(amounts),
    )


async def verify_counters(store: RedisStore, expected: Expected) -> None:
    wrong = await counter_differences(store, expected)
    assert not wrong, f"{len(wrong)} counters differ from the model, e.g. {wrong[0]}"
    users: dict[tuple[str, str], dict[str, dict[Zone, int]]] = {}
    for (sub, period, user, zone), seconds in expected.users.items():
        if (sub, period) not in users:
            users[(sub, period)] = await store.user_seconds(sub, period)
        got = users[(sub, period)].get(user, {}).get(zone, 0)
        assert got == seconds, (sub, period, user, zone, got, seconds)


async def counter_differences(
    store: RedisStore, expected: Expected
) -> list[tuple[str, str, Zone, ZoneCounters | None, ZoneCounters]]:
    wrong = []
    for (sub, period, zone), counters in sorted(expected.counters.items()):
        snapshot = await store.snapshot(sub, period_start_ms(period))
        got = None
        if snapshot is not None and snapshot.period == period:
            got = snapshot.zones[zone]
        if got != counters:
            wrong.append((sub, period, zone, got, counters))
    return wrong


@dataclass
class Damage:
    """What a run did wrong, measured instead of asserted (for settings that lose data)."""

    counters_below: int = 0
    counters_above: int = 0
    included_s_missing: int = 0
    overage_s_missing: int = 0
    overage_micro_missing: int = 0
    call_clashes: int = 0
    charge_clashes: int = 0
    wrong_calls: int = 0
    rated_missing: int = 0
    dead_missing: int = 0

    @property
    def any(self) -> bool:
        return bool(self.counters_below or self.counters_above or self.call_clashes
                    or self.charge_clashes or self.wrong_calls or self.rated_missing
                    or self.dead_missing)

    def line(self) -> str:
        return (f"{self.counters_below} zone counters below the model "
                f"(-{self.included_s_missing} s included, -{self.overage_s_missing} s overage, "
                f"-{Decimal(self.overage_micro_missing) / 1_000_000} overage amount), "
                f"{self.counters_above} above, {self.call_clashes} call ids and "
                f"{self.charge_clashes} charge ids emitted with two different contents, "
                f"{self.wrong_calls} rated calls differing from the model, "
                f"{self.dead_missing} conflicting duplicates rated instead of dead-lettered, "
                f"{self.rated_missing} input CDRs without a rated call")


def clashes(records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> int:
    first: dict[Any, dict[str, Any]] = {}
    ids = set()
    for record in records:
        k = key(record)
        if first.setdefault(k, record) != record:
            ids.add(k)
    return len(ids)


async def measure(store: RedisStore, expected: Expected, seen: Outputs) -> Damage:
    damage = Damage()
    for _, _, _, got, want in await counter_differences(store, expected):
        got = got or ZoneCounters()
        if got.used_included_s + got.overage_s + got.unbilled_s < (
                want.used_included_s + want.overage_s + want.unbilled_s):
            damage.counters_below += 1
        else:
            damage.counters_above += 1
        damage.included_s_missing += want.used_included_s - got.used_included_s
        damage.overage_s_missing += want.overage_s - got.overage_s
        damage.overage_micro_missing += want.overage_micro - got.overage_micro
    damage.call_clashes = clashes(seen.rated, lambda r: (r["subscription_id"], r["call_id"]))
    damage.charge_clashes = clashes(seen.charges, lambda c: c["charge_id"])
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for record in seen.rated:
        first.setdefault((record["subscription_id"], record["call_id"]), strip_time(record))
    damage.wrong_calls = sum(1 for k, v in expected.rated.items() if first.get(k) != v)
    damage.rated_missing, damage.dead_missing = seen.missing(expected)
    return damage


def counters_from_rated(rated: Iterable[dict[str, Any]]) -> Expected:
    """The counters that the first copy of each rated call adds up to: what a Redis
    consistent with calls.rated (and so with what was billed) holds."""
    out = Expected()
    seen: set[tuple[str, str]] = set()
    for record in rated:
        key = (record["subscription_id"], record["call_id"])
        if key in seen or record["outcome"] == "free":
            seen.add(key)
            continue
        seen.add(key)
        counters = out.counters.setdefault(
            (record["subscription_id"], record["period"], record["zone"]), ZoneCounters())
        counters.used_included_s += record["included_s"]
        counters.overage_s += record["overage_s"]
        counters.unbilled_s += record["unbilled_s"]
        if record["overage_s"]:
            counters.overage_micro += int(Decimal(record["amount"]) * 1_000_000)
    return out
