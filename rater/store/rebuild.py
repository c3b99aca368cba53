"""Rebuild the rater's whole Redis state from what the topics carry (`rater rebuild`).

Redis holds the subscriptions, the counters, the per-user tallies, the alert flags
and the memory of every rated call id. Everything the rater ever told the world is
in Kafka, so all of it can be rebuilt (docs/operations.md, "Recover from a lost
Redis"); `rater.cli.rebuild` reads the topics and calls this module:

1. `subscriptions.events`, applied in order as the worker applies them
   (`apply_events`: billing account and currency never change; a user's spend limit
   changes only for an event whose revision is newer than the one applied);
2. `calls.rated`: each call's first record (re-emissions are identical copies; a call
   found with two contents is reported, the first kept);
3. `billing.overage-charges` (the rate each charge used), `subscriptions.alerts` (the
   thresholds already crossed) and `calls.cdr` (each rated call's CDR, for the content
   fingerprint that tells a replay from a reused call id; when a CDR is no longer
   retained the fingerprint is computed without its `destination`);
4. `rebuild_state` computes every key in the layout of `rater.store.keys` (the
   billing accounts' subscription indexes too) with the
   expiry the rating script would give it (keys already past it are left out), and
   `write_state` deletes every key under the deployment's prefix and writes them afresh.

Nothing is produced to Kafka; the workers' committed offsets stay as they are, so
records after them are rated on top of the rebuilt state, as they would have been.
The differential test (tests/integration/store/test_rebuild_differential.py) holds
this module to what the Lua scripts write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import orjson

from rater.rating.money import to_micro
from rater.rating.periods import period_of
from rater.rating.subscription_rules import ImmutableFieldError, check_upsert
from rater.records import (
    Cdr,
    InvalidRecord,
    PaygChange,
    SpendLimitChange,
    Subscription,
    cdr_fingerprint,
    decode_cdr,
    decode_subscription_event,
    parse_timestamp,
)
from rater.store import keys
from rater.store.errors import redis_errors
from rater.store.keys import KEEP_MS, KeySpace
from rater.store.redis_store import RedisStore

WRITE_CHUNK = 2000
ANY_SIZE = 16_777_216  # records on the topics were accepted once: no size limit here


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


@dataclass
class LimitState:
    """One user's spend limit as the events leave it (`lim`, rater.store.keys)."""

    limit_micro: int | None = None
    revision: int = 0  # applied
    reserved: int | None = None  # the highest revision an event carried (reserved by the API)


@dataclass
class SubscriptionState:
    """What `subscriptions.events` leave: the subscriptions and the users' spend limits."""

    plans: dict[str, Subscription] = field(default_factory=dict)
    limits: dict[tuple[str, str], LimitState] = field(default_factory=dict)


def apply_events(messages: Sequence[Any], report: Report) -> SubscriptionState:
    state = SubscriptionState()
    subs = state.plans
    for message in messages:
        try:
            event = decode_subscription_event(message.value or b"", ANY_SIZE)
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
        if isinstance(event, SpendLimitChange):
            if event.subscription_id not in subs:
                report.events_skipped += 1
            else:
                _apply_limit(state.limits.setdefault(
                    (event.subscription_id, event.user_id), LimitState()), event)
            continue
        try:
            check_upsert(subs.get(event.subscription_id), event)
        except ImmutableFieldError:
            report.events_skipped += 1  # the worker refuses these too
            continue
        subs[event.subscription_id] = event
    report.subscriptions = len(subs)
    return state


def _apply_limit(limit: LimitState, event: SpendLimitChange) -> None:
    """As lua/apply_revision.lua (and lua/reserve_revision.lua before the API's events)."""
    if event.revision is None:
        limit.limit_micro, limit.revision = event.limit_micro, limit.revision + 1
        return
    limit.reserved = max(limit.reserved or 0, event.revision)
    if event.revision > limit.revision:
        limit.limit_micro, limit.revision = event.limit_micro, event.revision


def cdr_fingerprints(messages: Sequence[Any]) -> dict[tuple[str, str], dict[tuple[Any, ...], str]]:
    """(subscription, call id) -> the fingerprint of each distinct CDR content seen."""
    found: dict[tuple[str, str], dict[tuple[Any, ...], str]] = defaultdict(dict)
    for message in messages:
        try:
            cdr = decode_cdr(message.value or b"", ANY_SIZE)
        except InvalidRecord:
            continue
        content = (cdr.user_id, cdr.started_at_ms, cdr.duration_s, cdr.direction, cdr.zone,
                   cdr.emergency)
        found[(cdr.subscription_id, cdr.call_id)].setdefault(content, cdr_fingerprint(cdr))
    return found


def rebuild_state(space: KeySpace, grace_ms: int, events: SubscriptionState,
                  rated: Sequence[Any], charges: Sequence[Any], alerts: Sequence[Any],
                  fingerprints: dict[tuple[str, str], dict[tuple[Any, ...], str]],
                  report: Report, now: int) -> Rebuilt:
    state = Rebuilt()
    subs = events.plans
    for plan in subs.values():
        state.hashes[space.subscription(plan.subscription_id)] = keys.subscription_fields(plan)
        state.put(space.account_subscriptions(plan.billing_account_id), plan.subscription_id,
                  str(plan.billing_anchor_day))
    for (sub_id, user_id), limit in events.limits.items():
        value_field, revision_field, reserved_field = keys.limit_fields(user_id)
        if limit.limit_micro is not None:
            state.put(space.limits(sub_id), value_field, str(limit.limit_micro))
        state.put(space.limits(sub_id), revision_field, str(limit.revision))
        if limit.reserved is not None:
            state.put(space.limits(sub_id), reserved_field, str(limit.reserved))

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
        started = parse_timestamp(record["started_at"], "started_at")
        rated_at = parse_timestamp(record["rated_at"], "rated_at")
        period = record["period"]
        end_ms = period_of(started, sub.billing_anchor_day).end_ms
        overage = int(record["overage_s"])
        rate = ""
        amount_micro = 0
        if overage > 0:
            amount_micro = to_micro(Decimal(record["amount"]))
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
        calls_key = space.calls(sub_id, started)
        state.put(calls_key, call_id, keys.rated_call_row(
            fingerprint, period, billable, included, overage, unbilled, record["outcome"],
            amount_micro, rated_at, rate))
        state.expire(calls_key, keys.calls_bucket_expires_at(started, grace_ms))
        if record["outcome"] == "free":
            continue
        counters_key, users_key = space.counters(sub_id, period), space.users(sub_id, period)
        expires_at = keys.period_keys_expire_at(end_ms, grace_ms)
        if included:
            state.add(counters_key, keys.used_field(zone), included)
        if overage:
            state.add(counters_key, keys.overage_field(zone), overage)
            state.add(counters_key, keys.amount_field(zone), amount_micro)
        if unbilled:
            state.add(counters_key, keys.unbilled_field(zone), unbilled)
        if billable:
            state.add(users_key, keys.user_field(record["user_id"], zone), billable)
            if overage:  # what a spend limit weighs (SPEC §14), as rate_batch counts it
                state.add(users_key, keys.user_amount_field(record["user_id"]), amount_micro)
            state.expire(users_key, expires_at)
        state.expire(counters_key, expires_at)
        track = crossings[(sub_id, period, zone)]
        track.append(((track[-1][0] if track else 0) + included, call_id))

    flagged: set[str] = set()
    for message in alerts:
        alert = orjson.loads(message.value)
        if alert["alert_id"] in flagged or alert["subscription_id"] not in subs:
            continue
        flagged.add(alert["alert_id"])
        used = int(alert["used_included_s"])
        track = crossings.get((alert["subscription_id"], alert["period"], alert["zone"]), [])
        who = next((call for total, call in track if total >= used), None)
        if who is None:
            report.alert_calls_missing += 1
        at = parse_timestamp(alert["at"], "at")
        state.put(space.counters(alert["subscription_id"], alert["period"]),
                  keys.alert_flag_field(alert["zone"], int(alert["threshold"])),
                  keys.alert_flag(used, int(alert["included_s"]), at, who or ""))
        report.alert_flags += 1

    for key, at_ms in list(state.expire_at.items()):
        if at_ms <= now:  # already expired in the Redis that was lost
            report.expired_keys += 1
            del state.hashes[key]
            del state.expire_at[key]
    return state


async def write_state(store: RedisStore, state: Rebuilt, report: Report, now: int) -> None:
    client = store.client
    async with redis_errors():
        doomed = [key for pattern in (store.keys.every_subscription_key,
                                      store.keys.every_account_index_key)
                  async for key in client.scan_iter(match=pattern, count=1000)]
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
