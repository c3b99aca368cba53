"""The Redis adapter: every read and write of rater state goes through here.

One EVALSHA rates a whole batch: `rate_batch` groups CDRs by hash slot (one
group in standalone Redis), so a batch of 1,000 CDRs costs one round trip.
Every redis-py failure leaves this module as `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from rater.config import Settings
from rater.rating.clock import RatingClock
from rater.rating.decision import PoolState
from rater.rating.results import (
    AlertCrossing,
    CallRating,
    Rejection,
    SessionEffect,
    ZoneCounters,
)
from rater.rating.sessions import Expirations
from rater.rating.spend import SpendTerms
from rater.rating.subscription_rules import ImmutableFieldError
from rater.records.shapes import ZONES, Cdr, Increment, Subscription, Zone
from rater.store import keys
from rater.store.errors import redis_errors
from rater.store.keys import KEEP_MS, SESSION_KEEP_MS, SESSION_SWEEP_MAX, ZONE_LETTER, KeySpace
from rater.store.pipelined import PipelinedConnection
from rater.store.scripts import source
from rater.store.sessions import SessionStore

V = TypeVar("V")


@dataclass(frozen=True)  # no slots: `Applied[bool](...)` sets __orig_class__
class Applied(Generic[V]):
    """A change of an audited setting (PAYG, a user's spend limit) as Redis took it."""

    previous: V
    revision: int
    applied: bool  # False when a newer change was already stored


PaygSwitch = Applied[bool]
LimitChange = Applied[int | None]  # limits in micro-units; None: no limit


@dataclass(frozen=True, slots=True)
class UserUsage:
    """One user in a period (the users report): billable seconds by zone, the overage
    amount charged, what the user's sessions reserve, and the user's limit (SPEC §14)."""

    seconds: dict[Zone, int]
    spent_micro: int = 0
    reserved_micro: int = 0
    limit_micro: int | None = None


# Not frozen: one is built per CDR on the hot path, and a frozen dataclass's __init__
# costs about six times a plain one (docs/performance.md). Never mutate one all the same.
@dataclass(slots=True)
class RatingInput:
    cdr: Cdr
    fingerprint: str


@dataclass(slots=True)
class RatingRequest:
    """A batch's script calls, built before they are sent (RedisStore.rating_request)."""

    size: int  # items rated
    calls: list[tuple[list[int], list[str], list[Any]]]  # per slot: item indexes, keys, args


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    """A subscription and its counters for one period, read in one round trip."""

    subscription_id: str
    billing_account_id: str
    currency: str
    licenses: int
    payg_enabled: bool
    billing_anchor_day: int
    increment: Increment
    included_minutes: dict[Zone, int]
    period: str
    period_end_ms: int
    zones: dict[Zone, ZoneCounters] = field(default_factory=dict)
    expired: Expirations = field(default_factory=Expirations)  # released first (§11.6)
    rates: dict[Zone, Decimal] = field(default_factory=dict)  # PAYG rate per minute
    # the asked-for user's limit, overage charged and reserved by its sessions in the
    # period (SPEC §14); None when no user was asked for or the user has no limit
    user_spend: tuple[int, int, int] | None = None

    def pool_s(self, zone: Zone) -> int:
        return self.licenses * self.included_minutes[zone] * 60

    def remaining_s(self, zone: Zone) -> int:
        """Included seconds not used yet (SPEC §5.5), reservations aside."""
        return max(0, self.pool_s(zone) - self.zones[zone].used_included_s)

    def available_s(self, zone: Zone) -> int:
        """What a decision may still grant (SPEC §11.2): remaining less what sessions hold."""
        counters = self.zones[zone]
        return max(0, self.pool_s(zone) - counters.used_included_s - counters.reserved_s)

    def pool_state(self, zone: Zone) -> PoolState:
        """§6's view of the pool: its `remaining` subtracts the reservations (SPEC §11), and
        the user's spend limit counts what the user was charged and reserves (SPEC §14)."""
        spend = None
        if self.user_spend is not None:
            limit, spent, reserved = self.user_spend
            spend = SpendTerms(self.rates[zone], limit, spent, reserved)
        return PoolState(self.available_s(zone), self.payg_enabled, self.increment, spend)


class RerateChange(Protocol):
    """What `rater.corrections.rerate.CounterDeltas` carries to the store."""

    zones: dict[Zone, ZoneCounters]
    totals: dict[Zone, ZoneCounters]
    user_seconds: dict[tuple[str, Zone], int]
    user_totals: dict[tuple[str, Zone], int]
    user_amounts: dict[str, int]
    user_amount_totals: dict[str, int]


def _counter_fields(zones: dict[Zone, ZoneCounters]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for zone, counters in zones.items():
        fields[keys.used_field(zone)] = counters.used_included_s
        fields[keys.overage_field(zone)] = counters.overage_s
        fields[keys.unbilled_field(zone)] = counters.unbilled_s
        fields[keys.amount_field(zone)] = counters.overage_micro
    return fields


def _kind(cdr: Cdr) -> str:
    direction = "o" if cdr.direction == "outbound" else "i"
    return f"{ZONE_LETTER[cdr.zone]}{direction}{int(cdr.emergency)}"


SESSION_EFFECTS: tuple[SessionEffect, ...] = ("", "closed", "validity", "cdr_wait")


def _parse_result(row: list[Any]) -> CallRating | Rejection:
    if row[0] == "x":
        return Rejection(row[1], row[2])
    alerts = []
    for i in range(int(row[13])):
        at = 14 + i * 5
        alerts.append(
            AlertCrossing(row[at], row[1], int(row[at + 1]), int(row[at + 2]),
                          int(row[at + 3]), int(row[at + 4]))
        )
    return CallRating(
        period=row[1],
        billable_s=int(row[2]),
        included_s=int(row[3]),
        overage_s=int(row[4]),
        unbilled_s=int(row[5]),
        outcome=row[6],
        amount_micro=int(row[7]),
        rate_per_minute=row[9] or None,
        rated_at_ms=int(row[8]),
        billing_account_id=row[10],
        currency=row[11],
        alerts=tuple(alerts),
        replayed=row[0] == "d",
        session=SESSION_EFFECTS[int(row[12])],
    )


def rating_results(request: RatingRequest, replies: Sequence[str]) -> list[CallRating | Rejection]:
    """The request's replies (RedisStore.send_rating) as results aligned with its items."""
    results: list[CallRating | Rejection | None] = [None] * request.size
    for (indexes, _, _), reply in zip(request.calls, replies, strict=True):
        for index, row in zip(indexes, orjson.loads(reply), strict=True):
            results[index] = _parse_result(row)
    return [r for r in results if r is not None]


REQUEST_SLOTS = 64


def _ignore_expirations(expired: Expirations) -> None:
    pass


class RedisStore:
    def __init__(self, client: Any, prefix: str, cluster: bool = False,
                 pipelined: PipelinedConnection | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self.cluster = cluster
        # told of every session expiry a script made (the worker counts them in metrics)
        self.on_expired: Callable[[Expirations], None] = _ignore_expirations
        # HTTP requests (sessions, snapshots) hold one of these while they use Redis: a burst
        # of hundreds of requests queues here instead of exhausting redis-py's pool (100
        # connections per node, which then fails instead of waiting); rating, the agents
        # and the sweeper need only a few connections beside them
        self.request_slots = asyncio.Semaphore(REQUEST_SLOTS)
        self.sessions = SessionStore(self)
        # the API's per-request calls (snapshots, sessions) over one pipelined connection,
        # when the URL allows it (rater.store.pipelined); everything else through redis-py
        self._pipelined = pipelined
        self._rate = client.register_script(source("rate_batch"))
        self._upsert = client.register_script(source("upsert_subscription"))
        self._reserve_revision = client.register_script(source("reserve_revision"))
        self._apply_revision = client.register_script(source("apply_revision"))
        self._apply_rerate = client.register_script(source("apply_rerate"))
        self._snapshot = client.register_script(source("snapshot"))

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 30,
        }
        client: Any
        if settings.redis_cluster:
            client = RedisCluster.from_url(settings.redis_url, **options)
        else:
            # from_url sets no retry: after a Redis restart every pooled connection would
            # fail its next command once. Reconnect instead (the scripts are idempotent).
            retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, (RedisConnectionError,))
            client = aioredis.Redis.from_url(settings.redis_url, retry=retry, **options)
        pipelined = None if settings.redis_cluster else PipelinedConnection.for_url(
            settings.redis_url, options["socket_timeout"], options["socket_connect_timeout"])
        return cls(client, settings.key_prefix, settings.redis_cluster, pipelined)

    async def close(self) -> None:
        if self._pipelined is not None:
            await self._pipelined.close()
        await self.client.aclose()

    async def request_script(self, script: Any, keys: list[str], args: list[Any],
                             before: Sequence[tuple[Any, ...]] = ()) -> Any:
        """A per-request script's reply, the commands `before` it sent in the same round
        trip, over the pipelined connection when there is one. Only for calls that may be
        sent twice (rater.store.pipelined). A Redis that does not know the script yet (new,
        restarted, flushed) is given it, and everything is sent once more."""
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        async with redis_errors():
            if self._pipelined is not None:
                try:
                    return (await self._pipelined.execute(*before, evalsha))[-1]
                except NoScriptError:
                    await self._pipelined.execute(("SCRIPT", "LOAD", script.script))
                    return (await self._pipelined.execute(*before, evalsha))[-1]
            async with self.request_slots:  # redis-py's pool must not be exhausted by a burst
                if not before:
                    return await script(keys=keys, args=args)
                for attempt in (1, 2):
                    pipe = self.client.pipeline(transaction=False)
                    for command in before:
                        pipe.execute_command(*command)
                    # EVALSHA itself: a script object in a pipeline costs a SCRIPT EXISTS
                    # round trip on every call
                    pipe.execute_command(*evalsha)
                    try:
                        return (await pipe.execute())[-1]
                    except NoScriptError:
                        if attempt == 2:
                            raise
                        await self.client.script_load(script.script)

    async def request_command(self, *command: Any) -> Any:
        """One command on the request path (the session index's GETEX, ZADD LT), over the
        pipelined connection when there is one."""
        async with redis_errors():
            if self._pipelined is not None:
                return (await self._pipelined.execute(command))[0]
            async with self.request_slots:
                return await self.client.execute_command(*command)

    async def ping(self) -> bool:
        async with redis_errors():
            return bool(await self.client.ping())

    def sub_key(self, subscription_id: str) -> str:
        return self.keys.subscription(subscription_id)

    async def rate_batch(
        self, items: Sequence[RatingInput], clock: RatingClock, rated_at_ms: int
    ) -> list[CallRating | Rejection]:
        """Rate `items` in order; results align with them. One script call per hash slot."""
        request = self.rating_request(items, clock, rated_at_ms)
        return rating_results(request, await self.send_rating(request))

    # `rate_batch` in three steps, so a consumer can build the next batch's request and
    # parse the previous batch's replies while Redis runs a script
    # (rater.agents.cdr_consumer).

    def rating_request(
        self, items: Sequence[RatingInput], clock: RatingClock, rated_at_ms: int,
        call_per_item: bool = False,
    ) -> RatingRequest:
        """The script calls for `items` (CPU only): one per hash slot, in item order (one per
        item with `call_per_item`, which only the benchmark's comparison wants)."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            if call_per_item:
                slot = index
            elif self.cluster:
                slot = keys.slot_of(self.sub_key(item.cdr.subscription_id))
            else:
                slot = 0
            groups[slot].append(index)
        request = RatingRequest(len(items), [])
        for indexes in groups.values():
            key_index: dict[str, int] = {}
            cdrs: list[tuple[Any, ...]] = []
            for index in indexes:
                cdr = items[index].cdr
                key = self.sub_key(cdr.subscription_id)
                position = key_index.setdefault(key, len(key_index) + 1)
                cdrs.append((position, cdr.call_id, items[index].fingerprint, cdr.user_id,
                             cdr.started_at_ms, cdr.duration_s, _kind(cdr)))
            # the batch travels as one JSON argument and comes back as one JSON reply:
            # no per-field argument packing or reply parsing on either side
            args = [clock.now_ms, clock.grace_ms, clock.future_tolerance_ms, rated_at_ms,
                    KEEP_MS, SESSION_KEEP_MS, orjson.dumps(cdrs)]
            request.calls.append((indexes, list(key_index), args))
        return request

    async def send_rating(self, request: RatingRequest, pipelined: bool = False) -> list[str]:
        """Run the request's script calls (I/O only); their raw replies, in order. With
        `pipelined` (standalone Redis only) every call goes in one round trip."""
        async with redis_errors():
            if not pipelined:
                return [await self._rate(keys=call_keys, args=args)
                        for _, call_keys, args in request.calls]
            pipe = self.client.pipeline(transaction=False)
            for _, call_keys, args in request.calls:
                await self._rate(keys=call_keys, args=args, client=pipe)
            replies: list[str] = await pipe.execute()
            return replies

    async def upsert_subscription(self, sub: Subscription) -> None:
        await self.upsert_subscriptions([sub])

    async def upsert_subscriptions(self, subs: Sequence[Subscription]) -> None:
        """Apply `subscription.upserted` for each, in order; one round trip per call on a
        cluster, pipelined otherwise. ImmutableFieldError for the first that is refused."""
        calls = []
        for sub in subs:
            fields = keys.subscription_fields(sub)
            calls.append(([self.sub_key(sub.subscription_id)],
                          [part for pair in fields.items() for part in pair]))
        async with redis_errors():
            if self.cluster:
                answers = [await self._upsert(keys=k, args=a) for k, a in calls]
            else:
                pipe = self.client.pipeline(transaction=False)
                for k, a in calls:
                    await self._upsert(keys=k, args=a, client=pipe)
                answers = await pipe.execute()
        applied = [sub for sub, answer in zip(subs, answers, strict=True) if answer == "ok"]
        await self._index_accounts(applied)
        for sub, answer in zip(subs, answers, strict=True):
            if answer != "ok":
                raise ImmutableFieldError(sub.subscription_id, str(answer).partition(":")[2])

    async def _index_accounts(self, subs: Sequence[Subscription]) -> None:
        """Each applied subscription in its billing account's index (keys.py). Written
        after the upsert and before the event is acknowledged: a crash in between
        replays the event, which writes both again. Refused upserts are never indexed
        (their billing account is the one the subscription may not move to)."""
        if not subs:
            return
        async with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for sub in subs:
                pipe.hset(self.keys.account_subscriptions(sub.billing_account_id),
                          sub.subscription_id, str(sub.billing_anchor_day))
            await pipe.execute()

    async def account_subscriptions(self, billing_account_id: str) -> dict[str, int]:
        """The billing account's subscriptions: id -> billing anchor day."""
        async with redis_errors():
            raw = await self.client.hgetall(self.keys.account_subscriptions(billing_account_id))
        return {sub: int(anchor) for sub, anchor in raw.items()}

    async def index_every_subscription(self) -> int:
        """Write the account index of every stored subscription (for subscriptions stored
        before the index existed); returns how many. Safe beside running workers: the
        billing account and anchor day come from the subscription hash itself."""
        count = 0
        pattern = f"{self.keys.every_subscription_key}}}:sub"
        async with redis_errors():
            async for key in self.client.scan_iter(match=pattern, count=1000):
                account, anchor = await self.client.hmget(key, ["ba", "anchor"])
                if account is None or anchor is None:
                    continue
                subscription_id = key[len(self.prefix) + 2:-len("}:sub")]
                await self.client.hset(self.keys.account_subscriptions(account),
                                       subscription_id, anchor)
                count += 1
        return count

    async def set_payg(
        self, subscription_id: str, enabled: bool, revision: int | None = None
    ) -> PaygSwitch | None:
        """Switch PAYG; None when the subscription is unknown. With `revision`, only a
        newer revision than the stored one applies (replayed audit events change nothing)."""
        value, revision_field, _ = keys.PAYG_FIELDS
        answer = await self._apply_setting(subscription_id, keys.SUBSCRIPTION_SUFFIX, value,
                                           revision_field, "1" if enabled else "0", revision)
        if answer is None:
            return None
        previous, stored_revision, applied = answer
        return PaygSwitch(previous == "1", stored_revision, applied)

    async def set_spend_limit(
        self, subscription_id: str, user_id: str, limit_micro: int | None,
        revision: int | None = None,
    ) -> LimitChange | None:
        """Set (None: remove) a user's monthly spend limit (SPEC §14); None when the
        subscription is unknown. Revisions as `set_payg`."""
        value, revision_field, _ = keys.limit_fields(user_id)
        answer = await self._apply_setting(
            subscription_id, keys.LIMITS_SUFFIX, value, revision_field,
            "" if limit_micro is None else str(limit_micro), revision)
        if answer is None:
            return None
        previous, stored_revision, applied = answer
        return LimitChange(int(previous) if previous else None, stored_revision, applied)

    async def _apply_setting(self, subscription_id: str, suffix: str, value_field: str,
                             revision_field: str, value: str,
                             revision: int | None) -> tuple[str, int, bool] | None:
        async with redis_errors():
            answer = await self._apply_revision(
                keys=[self.sub_key(subscription_id)],
                args=[suffix, value_field, revision_field, value,
                      "" if revision is None else revision])
        if not answer:
            return None
        previous, stored_revision, applied = answer
        return str(previous), int(stored_revision), bool(applied)

    async def subscription(self, subscription_id: str) -> Subscription | None:
        """The subscription as its last upsert (and PAYG switch) left it; None when unknown."""
        async with redis_errors():
            fields = await self.client.hgetall(self.sub_key(subscription_id))
        return keys.subscription_from_fields(subscription_id, fields) if fields else None

    async def reserve_payg_revision(self, subscription_id: str) -> tuple[bool, int] | None:
        """(PAYG now, the revision the next switch carries); None when unknown. Switches
        nothing: rater.service.payg publishes the audit event before it applies it."""
        reserved = await self._reserve_setting(subscription_id, keys.SUBSCRIPTION_SUFFIX,
                                               keys.PAYG_FIELDS)
        if reserved is None:
            return None
        payg, revision = reserved
        return payg == "1", revision

    async def reserve_spend_limit_revision(
        self, subscription_id: str, user_id: str
    ) -> tuple[int | None, int] | None:
        """(the user's limit now, the revision the next change carries); None when the
        subscription is unknown. Changes nothing (rater.service.spend_limits)."""
        reserved = await self._reserve_setting(subscription_id, keys.LIMITS_SUFFIX,
                                               keys.limit_fields(user_id))
        if reserved is None:
            return None
        limit, revision = reserved
        return (int(limit) if limit else None), revision

    async def _reserve_setting(self, subscription_id: str, suffix: str,
                               fields: tuple[str, str, str]) -> tuple[str, int] | None:
        async with redis_errors():
            answer = await self._reserve_revision(keys=[self.sub_key(subscription_id)],
                                                  args=[suffix, *fields])
        if not answer:
            return None
        value, revision = answer
        return str(value), int(revision)

    async def snapshot(self, subscription_id: str, at_ms: int, now_ms: int | None = None,
                       user_id: str | None = None) -> SubscriptionSnapshot | None:
        """The plan and the counters of the period holding `at_ms`, after the sweep of the
        subscription's sessions expired by `now_ms` (default `at_ms`); with `user_id`, also
        that user's spend limit and what counts against it (SPEC §14)."""
        now = at_ms if now_ms is None else now_ms
        answer = await self.request_script(
            self._snapshot, [self.sub_key(subscription_id)],
            [at_ms, now, SESSION_KEEP_MS, SESSION_SWEEP_MAX, user_id or ""])
        if not answer:
            return None
        (period, end_ms, plan_flat, counters_flat, expired_validity, expired_wait,
         spend) = answer
        expired = Expirations(int(expired_validity), int(expired_wait))
        if expired:
            self.on_expired(expired)
        plan = dict(zip(plan_flat[::2], plan_flat[1::2], strict=True))
        counters = dict(zip(counters_flat[::2], counters_flat[1::2], strict=True))
        zones: dict[Zone, ZoneCounters] = {}
        for zone in ZONES:
            zones[zone] = ZoneCounters(
                used_included_s=int(counters.get(keys.used_field(zone), 0)),
                overage_s=int(counters.get(keys.overage_field(zone), 0)),
                unbilled_s=int(counters.get(keys.unbilled_field(zone), 0)),
                overage_micro=int(counters.get(keys.amount_field(zone), 0)),
                reserved_s=int(counters.get(keys.reserved_field(zone), 0)),
            )
        return SubscriptionSnapshot(
            subscription_id=subscription_id,
            billing_account_id=plan["ba"],
            currency=plan["cur"],
            licenses=int(plan["lic"]),
            payg_enabled=plan["payg"] == "1",
            billing_anchor_day=int(plan["anchor"]),
            increment=Increment(int(plan["inc_m"]), int(plan["inc_i"])),
            included_minutes={"domestic": int(plan["min_d"]),
                              "international": int(plan["min_i"])},
            period=period,
            period_end_ms=int(end_ms),
            zones=zones,
            expired=expired,
            rates={"domestic": Decimal(plan["rate_d"]),
                   "international": Decimal(plan["rate_i"])},
            user_spend=(int(spend[0]), int(spend[1]), int(spend[2])) if spend else None,
        )

    async def apply_rerate(self, subscription_id: str, rerate_id: str, period: str,
                           expire_at_ms: int, now: int, change: RerateChange) -> bool:
        """Move the period's counters by a rerate's deltas (set them to its totals where they
        are gone); False when this rerate was applied before (nothing changes)."""
        document = {
            "deltas": _counter_fields(change.zones),
            "totals": _counter_fields(change.totals),
            "user_deltas": {
                **{keys.user_field(u, z): n for (u, z), n in change.user_seconds.items()},
                **{keys.user_amount_field(u): n for u, n in change.user_amounts.items()}},
            "user_totals": {
                **{keys.user_field(u, z): n for (u, z), n in change.user_totals.items()},
                **{keys.user_amount_field(u): n for u, n in change.user_amount_totals.items()}},
        }
        async with redis_errors():
            applied = await self._apply_rerate(
                keys=[self.sub_key(subscription_id)],
                args=[rerate_id, period, expire_at_ms, now, orjson.dumps(document)])
        return bool(applied)

    async def user_seconds(self, subscription_id: str, period: str) -> dict[str, dict[Zone, int]]:
        """Billable seconds per user and zone (outbound, non-free calls) in `period`."""
        async with redis_errors():
            raw = await self.client.hgetall(self.keys.users(subscription_id, period))
        return {user: usage.seconds for user, usage in _user_usage(raw).items()
                if any(usage.seconds.values())}

    async def user_report(self, subscription_id: str, period: str) -> dict[str, UserUsage]:
        """Every user of the period with billable seconds, and every user with a spend
        limit (SPEC §14): seconds by zone, overage charged, reserved, limit."""
        async with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.users(subscription_id, period))
            pipe.hgetall(self.keys.limits(subscription_id))
            raw, limits = await pipe.execute()
        usage = {user: found for user, found in _user_usage(raw).items()
                 if any(found.seconds.values())}
        for name, value in limits.items():
            kind, _, user = name.partition(":")
            if kind == "l":
                found = usage.get(user, UserUsage(dict.fromkeys(ZONES, 0)))
                usage[user] = UserUsage(found.seconds, found.spent_micro, found.reserved_micro,
                                        int(value))
        return usage


def _user_usage(raw: dict[str, str]) -> dict[str, UserUsage]:
    """A `u:<period>` hash by user (keys.parse_user_field)."""
    seconds: dict[str, dict[Zone, int]] = {}
    amounts: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        user, kind = keys.parse_user_field(name)
        by_zone = seconds.setdefault(user, dict.fromkeys(ZONES, 0))
        if kind == "domestic" or kind == "international":
            by_zone[kind] = int(value)
        else:
            amounts.setdefault(user, {})[kind] = int(value)
    return {user: UserUsage(by_zone, amounts.get(user, {}).get("spent", 0),
                            amounts.get(user, {}).get("reserved", 0))
            for user, by_zone in seconds.items()}
