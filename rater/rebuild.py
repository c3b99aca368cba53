"""`rater rebuild --from-rated`: rebuild a lost or damaged Redis from the Kafka topics.

Redis holds the subscriptions, the counters, the per-user tallies, the alert flags
and the memory of every rated call id. Everything the rater ever told the world is
in Kafka, so all of it can be rebuilt (docs/operations.md, "Recover from a lost
Redis"). Run it with every worker stopped:

1. `subscriptions.events` from the start, applied in order (as the worker does:
   billing account and currency never change) -> the subscription hashes;
2. `calls.rated` from the start: each call's first record (re-emissions are
   identical copies; a call found with two contents is reported, the first kept);
3. `billing.overage-charges` (the rate each charge used), `subscriptions.alerts`
   (the thresholds already crossed) and `calls.cdr` (each rated call's CDR, for the
   content fingerprint that tells a replay from a reused call id; when a CDR is no
   longer retained the fingerprint is computed without its `destination`);
4. every key under the deployment's prefix is deleted, then written afresh: the
   counters are the sums of the rated calls, the call memory one row per rated call,
   the alert flags name the call that crossed each threshold, and every key gets the
   expiry the rating script would give it (keys already past it are left out).

Nothing is produced to Kafka. The workers' committed offsets stay as they are, so
records after them are rated on top of the rebuilt state, as they would have been.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    DescribeGroupsRequest,
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
)

from rater.config import Settings
from rater.rating.clock import day_to_ms, from_ms, now_ms
from rater.rating.money import to_micro
from rater.rating.periods import period_of
from rater.records import (
    Cdr,
    InvalidRecord,
    PaygChange,
    Subscription,
    cdr_fingerprint,
    decode_cdr,
    decode_subscription_event,
    parse_timestamp,
)
from rater.store import RedisStore, keys
from rater.store.redis_store import KEEP_MS, ZONE_LETTER, subscription_fields

OUTCOME_LETTER = {"included": "i", "overage": "o", "exhausted": "e", "blocked": "b",
                  "free": "f"}
WRITE_CHUNK = 2000


@dataclass
class Report:
    subscriptions: int = 0
    events_skipped: int = 0
    rated_calls: int = 0
    rated_copies: int = 0
    rated_conflicts: int = 0
    unknown_subscription: int = 0
    fingerprints_guessed: int = 0
    rates_missing: int = 0
    alert_flags: int = 0
    alert_calls_missing: int = 0
    expired_keys: int = 0
    keys_deleted: int = 0
    keys_written: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"subscriptions: {self.subscriptions} ({self.events_skipped} events skipped, "
            "as the worker skips them)",
            f"rated calls: {self.rated_calls} distinct from {self.rated_copies} records "
            f"({self.rated_conflicts} call ids with two different contents: first kept; "
            f"{self.unknown_subscription} of unknown subscriptions left out)",
            f"fingerprints from calls.cdr: {self.rated_calls - self.fingerprints_guessed}, "
            f"without destination (CDR no longer retained): {self.fingerprints_guessed}",
            f"charges without a charge record (rate from the plan): {self.rates_missing}",
            f"alert flags: {self.alert_flags} ({self.alert_calls_missing} without their call)",
            f"keys deleted: {self.keys_deleted}, written: {self.keys_written}, "
            f"past their expiry (left out): {self.expired_keys}",
            f"done in {self.seconds:.1f}s",
        ]


@dataclass
class Rebuilt:
    """The rater's Redis state, in plain dicts: key -> hash, key -> expiry (epoch ms)."""

    hashes: dict[str, dict[str, str]] = field(default_factory=dict)
    expire_at: dict[str, int] = field(default_factory=dict)

    def put(self, key: str, name: str, value: str) -> None:
        self.hashes.setdefault(key, {})[name] = value

    def add(self, key: str, name: str, amount: int) -> None:
        fields = self.hashes.setdefault(key, {})
        fields[name] = str(int(fields.get(name, "0")) + amount)

    def expire(self, key: str, at_ms: int) -> None:
        self.expire_at.setdefault(key, at_ms)


async def read_topic(settings: Settings, topic: str, timeout_s: float = 600.0) -> list[Any]:
    """Every record of `topic` up to its end offsets now, partition by partition, each in
    offset order (one subscription's records share a partition: its order is kept)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise RuntimeError(f"topic {topic} does not exist")
        consumer.subscribe([topic])  # without a group: every partition, once metadata says
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {topic} after 30s")
            await consumer.getmany(timeout_ms=100, max_records=1)
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in tps if ends[tp] > 0}
        for tp in pending:
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took more than {timeout_s:.0f}s")
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=50_000)
            for tp, messages in batch.items():
                records[tp].extend(m for m in messages if m.offset < ends[tp])
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return [m for tp in tps for m in records[tp]]
    finally:
        await consumer.stop()


def apply_events(messages: Sequence[Any], report: Report) -> dict[str, Subscription]:
    subs: dict[str, Subscription] = {}
    for message in messages:
        try:
            event = decode_subscription_event(message.value or b"", 16_777_216)
        except InvalidRecord:
            report.events_skipped += 1
            continue
        if isinstance(event, PaygChange):
            current = subs.get(event.subscription_id)
            if current is None:
                report.events_skipped += 1
            else:
                subs[event.subscription_id] = replace(current, payg_enabled=event.enabled)
            continue
        current = subs.get(event.subscription_id)
        if current is not None and (current.billing_account_id != event.billing_account_id
                                    or current.currency != event.currency):
            report.events_skipped += 1  # the worker refuses these (immutable fields)
            continue
        subs[event.subscription_id] = event
    report.subscriptions = len(subs)
    return subs


def cdr_fingerprints(messages: Sequence[Any]) -> dict[tuple[str, str], dict[tuple[Any, ...], str]]:
    """(subscription, call id) -> the fingerprint of each distinct CDR content seen."""
    found: dict[tuple[str, str], dict[tuple[Any, ...], str]] = defaultdict(dict)
    for message in messages:
        try:
            cdr = decode_cdr(message.value or b"", 16_777_216)
        except InvalidRecord:
            continue
        content = (cdr.user_id, cdr.started_at_ms, cdr.duration_s, cdr.direction, cdr.zone,
                   cdr.emergency)
        found[(cdr.subscription_id, cdr.call_id)].setdefault(content, cdr_fingerprint(cdr))
    return found


def _month(ms: int) -> tuple[str, int]:
    """The call-memory bucket of a start instant and the bucket's expiry base (ms):
    the first day of the month after next, as the rating script computes it."""
    day = from_ms(ms)
    year, month = divmod(day.year * 12 + day.month - 1 + 2, 12)
    return f"{day.year:04d}{day.month:02d}", day_to_ms(date(year, month + 1, 1))


def rebuild_state(settings: Settings, subs: dict[str, Subscription], rated: Sequence[Any],
                  charges: Sequence[Any], alerts: Sequence[Any],
                  fingerprints: dict[tuple[str, str], dict[tuple[Any, ...], str]],
                  report: Report, now: int) -> Rebuilt:
    prefix = settings.key_prefix
    grace_ms = settings.late_grace_s * 1000
    state = Rebuilt()
    for plan in subs.values():
        state.hashes[keys.subscription_key(prefix, plan.subscription_id)] = (
            subscription_fields(plan))

    rates: dict[str, str] = {}
    for message in charges:
        charge = orjson.loads(message.value)
        rates.setdefault(charge["charge_id"], str(charge["rate_per_minute"]))

    first: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[dict[str, Any]] = []
    for message in rated:
        record = orjson.loads(message.value)
        report.rated_copies += 1
        ident = (record["subscription_id"], record["call_id"])
        seen = first.get(ident)
        if seen is None:
            first[ident] = record
            order.append(record)
        elif seen != record:
            report.rated_conflicts += 1
    # the running used_included_s after each call, to find the call behind each alert
    crossings: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
    for record in order:
        sub = subs.get(record["subscription_id"])
        if sub is None:
            report.unknown_subscription += 1
            continue
        report.rated_calls += 1
        sub_id, call_id, zone = record["subscription_id"], record["call_id"], record["zone"]
        base = keys.subscription_key(prefix, sub_id)[: -len("sub")]
        started = parse_timestamp(record["started_at"], "started_at")
        rated_at = parse_timestamp(record["rated_at"], "rated_at")
        period = record["period"]
        end_ms = period_of(started, sub.billing_anchor_day).end_ms
        letter = ZONE_LETTER[zone]
        overage = int(record["overage_s"])
        rate = ""
        amount = "0"
        if overage > 0:
            amount = str(to_micro(Decimal(record["amount"])))
            rate = rates.get(record["charge_id"], "")
            if not rate:
                report.rates_missing += 1
                rate = str(sub.plan.payg_rate_per_minute[zone])
        content = (record["user_id"], started, int(record["duration_s"]), record["direction"],
                   zone, bool(record["emergency"]))
        fingerprint = fingerprints.get((sub_id, call_id), {}).get(content)
        if fingerprint is None:
            report.fingerprints_guessed += 1
            fingerprint = cdr_fingerprint(Cdr(call_id, sub_id, record["user_id"], started,
                                              int(record["duration_s"]), record["direction"],
                                              zone, bool(record["emergency"]), None))
        billable, included = int(record["billable_s"]), int(record["included_s"])
        unbilled = int(record["unbilled_s"])
        month, month_end = _month(started)
        calls_key = f"{base}c:{month}"
        row = "|".join([fingerprint, period, str(billable), str(included), str(overage),
                        str(unbilled), OUTCOME_LETTER[record["outcome"]], amount,
                        str(rated_at), rate])
        state.put(calls_key, call_id, row)
        state.expire(calls_key, month_end + grace_ms + KEEP_MS)
        if record["outcome"] == "free":
            continue
        counters_key, users_key = f"{base}p:{period}", f"{base}u:{period}"
        if included:
            state.add(counters_key, f"{letter}:used", included)
        if overage:
            state.add(counters_key, f"{letter}:over", overage)
            state.add(counters_key, f"{letter}:amt", int(amount))
        if unbilled:
            state.add(counters_key, f"{letter}:unb", unbilled)
        if billable:
            state.add(users_key, f"{record['user_id']}|{letter}", billable)
            state.expire(users_key, end_ms + grace_ms + KEEP_MS)
        state.expire(counters_key, end_ms + grace_ms + KEEP_MS)
        track = crossings[(sub_id, period, letter)]
        track.append(((track[-1][0] if track else 0) + included, call_id))

    flagged: set[str] = set()
    for message in alerts:
        alert = orjson.loads(message.value)
        if alert["alert_id"] in flagged or alert["subscription_id"] not in subs:
            continue
        flagged.add(alert["alert_id"])
        letter = ZONE_LETTER[alert["zone"]]
        used = int(alert["used_included_s"])
        track = crossings.get((alert["subscription_id"], alert["period"], letter), [])
        who = next((call for total, call in track if total >= used), None)
        if who is None:
            report.alert_calls_missing += 1
        base = keys.subscription_key(prefix, alert["subscription_id"])[: -len("sub")]
        at = parse_timestamp(alert["at"], "at")
        state.put(f"{base}p:{alert['period']}", f"a:{letter}:{alert['threshold']}",
                  f"{used}|{int(alert['included_s'])}|{at}|{who or ''}")
        report.alert_flags += 1

    for key, at_ms in list(state.expire_at.items()):
        if at_ms <= now:  # already expired in the Redis that was lost
            report.expired_keys += 1
            del state.hashes[key]
            del state.expire_at[key]
    return state


async def write_state(store: RedisStore, state: Rebuilt, report: Report, now: int) -> None:
    client = store.client
    pattern = f"{store.prefix}:{{*"
    doomed = [key async for key in client.scan_iter(match=pattern, count=1000)]
    for start in range(0, len(doomed), WRITE_CHUNK):
        async with client.pipeline(transaction=False) as pipe:
            for key in doomed[start:start + WRITE_CHUNK]:
                pipe.delete(key)
            await pipe.execute()
    report.keys_deleted = len(doomed)
    items = list(state.hashes.items())
    for start in range(0, len(items), WRITE_CHUNK // 2):
        async with client.pipeline(transaction=False) as pipe:
            for key, fields in items[start:start + WRITE_CHUNK // 2]:
                pipe.hset(key, mapping=fields)
                at_ms = state.expire_at.get(key)
                if at_ms is not None:
                    pipe.pexpireat(key, max(at_ms, now + KEEP_MS))
            await pipe.execute()
    report.keys_written = len(items)


class _DescribeGroups(DescribeGroupsRequest):  # type: ignore[misc]
    """DescribeGroups up to v2: aiokafka 0.14 cannot decode a v3 answer from Kafka 4."""


_DescribeGroups._CLASSES = (DescribeGroupsRequest_v0, DescribeGroupsRequest_v1,
                            DescribeGroupsRequest_v2)


async def live_members(settings: Settings) -> dict[str, int]:
    """Members of the rater's consumer groups (the Faust app's and the CDR consumer's)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        members: dict[str, int] = {}
        for group_id in (settings.app_id, f"{settings.app_id}-cdr"):  # -cdr: agents.fast_path
            node = await admin.find_coordinator(group_id)
            answer = await admin._client.send(node, _DescribeGroups(groups=[group_id]))
            for group in answer.groups:
                members[group[1]] = len(group[5])
        return members
    except Exception as exc:
        raise RuntimeError(f"cannot tell whether workers are running ({exc!r}); stop every "
                           "worker and pass --force") from None
    finally:
        await admin.close()


async def rebuild(settings: Settings, force: bool = False) -> Report:
    started = time.monotonic()
    report = Report()
    busy = {g: n for g, n in (await live_members(settings)).items() if n}
    if busy and not force:
        raise RuntimeError(f"workers are running (consumer group members: {busy}); stop every "
                           "worker first, or pass --force")
    topics = settings.topics
    events, rated, charges, alerts, cdrs = await asyncio.gather(
        read_topic(settings, topics.subscription_events), read_topic(settings, topics.rated),
        read_topic(settings, topics.charges), read_topic(settings, topics.alerts),
        read_topic(settings, topics.cdr))
    subs = apply_events(events, report)
    now = now_ms()
    state = rebuild_state(settings, subs, rated, charges, alerts, cdr_fingerprints(cdrs),
                          report, now)
    store = RedisStore.from_settings(settings)
    try:
        await write_state(store, state, report, now)
    finally:
        await store.close()
    report.seconds = time.monotonic() - started
    return report


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    if not args.from_rated:
        print("rater: rebuild needs --from-rated (the only source there is)", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(rebuild(settings, force=args.force))
    except (RuntimeError, TimeoutError) as exc:
        print(f"rater: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0


def add_rebuild_command(subparsers: Any) -> None:
    rebuild_parser = subparsers.add_parser(
        "rebuild", help="rebuild Redis (subscriptions, counters, call memory) from Kafka")
    rebuild_parser.add_argument("--from-rated", action="store_true",
                                help="from calls.rated and the other topics (required)")
    rebuild_parser.add_argument("--force", action="store_true",
                                help="even while workers are members of the consumer groups")
    rebuild_parser.set_defaults(func=cmd_rebuild)

