"""One rerate (SPEC §13) from beginning to end: `rater rerate`.

1. The run is recorded in the call history (`rerate_runs`) under a rerate id that the
   correction itself determines (period, subscriptions, corrected plans, reason): the
   same command run again is the same rerate. A new run takes `now` as its cutoff; a
   run begun before keeps its own cutoff and `at`, so a rerun after a crash recomputes
   the very same adjustments.
2. It waits until the history sink has stored every rated call of the topic up to the
   cutoff, then reads the period's calls rated up to the cutoff.
3. `rater.corrections.rerate` re-rates them with the corrected plans (pure).
4. The adjustments go to `billing.adjustments` (deterministic ids: a second send is a
   duplicate downstream dedupes), then each subscription's period counters move by the
   rerate's deltas in one atomic script, once (a marker per rerate id).
5. The run is marked finished.

Live rating of an open period goes on meanwhile: calls rated after the cutoff are not
rerated and keep their own contributions to the counters (the deltas only replace
those of the calls rerated), so nothing is counted twice. docs/corrections.md says how
the two are ordered.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from rater.config import Settings
from rater.corrections.rerate import PaygChangeAt, Rerate, rerate, rerate_id_for
from rater.history import corrections as queries
from rater.history import db
from rater.history.migrations import migrate
from rater.kafka import producer
from rater.progress import ProgressBar
from rater.rating.clock import day_to_ms, from_ms, now_ms, to_ms
from rater.rating.outputs import subscription_document
from rater.rating.periods import period_of
from rater.records import Subscription
from rater.store import RedisStore
from rater.store.keys import period_keys_expire_at


class RerateRefused(Exception):
    """The rerate cannot run as asked; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class RerateRequest:
    period: str  # a period's start date, or a month (every period starting in it)
    subscription_ids: Sequence[str]  # empty: those of `billing_account_id`
    billing_account_id: str | None
    plans: Sequence[Subscription]  # corrected plans; the others as they are in Redis
    reason: str
    rerate_id: str | None = None
    dry_run: bool = False
    history_wait_s: float = 120.0


@dataclass(slots=True)
class RerateOutcome:
    rerate_id: str
    cutoff: datetime
    result: Rerate
    applied: dict[str, bool]  # subscription -> its counters moved now (False: before)
    resumed: bool


async def run(settings: Settings, request: RerateRequest,
              progress: TextIO | None = None) -> RerateOutcome:
    conn = await db.connect(settings)
    store = RedisStore.from_settings(settings)
    try:
        await migrate(conn, settings.history_schema)
        subscription_ids = list(request.subscription_ids)
        if not subscription_ids and request.billing_account_id is not None:
            subscription_ids = await queries.account_subscriptions(
                conn, request.billing_account_id, request.period)
        if not subscription_ids:
            raise RerateRefused(f"no subscription with calls in period {request.period}")
        plans = await _plans(store, subscription_ids, request.plans)
        digest = _digest(plans)
        rerate_id = request.rerate_id or rerate_id_for(request.period, subscription_ids,
                                                       digest, request.reason)
        now = from_ms(now_ms())
        if request.dry_run:
            run_state = queries.RerateRun(rerate_id, now, now, None)
        else:
            run_state = await queries.begin_run(conn, rerate_id, request.period,
                                                subscription_ids, digest, request.reason, now)
        await _wait_for_history(settings, request.history_wait_s)
        calls = await queries.period_calls(conn, subscription_ids, request.period,
                                           run_state.cutoff)
        trail = await queries.payg_trail(conn, subscription_ids)
        result = rerate(calls, plans, {sub: [PaygChangeAt(at, on) for at, on in changes]
                                       for sub, changes in trail.items()},
                        rerate_id, request.reason, to_ms(run_state.began_at))
        outcome = RerateOutcome(rerate_id, run_state.cutoff, result, {},
                                run_state.began_at != now)
        if request.dry_run:
            return outcome
        await _emit(settings, result, progress)
        for subscription_id, deltas in result.deltas.items():
            period = _period_of_calls(calls, subscription_id)
            expire_at = period_keys_expire_at(
                period_of(day_to_ms(date.fromisoformat(period)),
                          plans[subscription_id].billing_anchor_day).end_ms,
                settings.late_grace_s * 1000)
            outcome.applied[subscription_id] = await store.apply_rerate(
                subscription_id, rerate_id, period, expire_at, now_ms(), deltas)
        await queries.finish_run(conn, rerate_id, from_ms(now_ms()))
        return outcome
    finally:
        await store.close()
        await conn.close()


async def _plans(store: RedisStore, subscription_ids: Sequence[str],
                 corrected: Sequence[Subscription]) -> dict[str, Subscription]:
    given = {plan.subscription_id: plan for plan in corrected}
    plans: dict[str, Subscription] = {}
    for subscription_id in subscription_ids:
        plan = given.get(subscription_id) or await store.subscription(subscription_id)
        if plan is None:
            raise RerateRefused(f"subscription {subscription_id!r} is neither in the plan "
                                "file nor known to the rater")
        plans[subscription_id] = plan
    unused = sorted(set(given) - set(subscription_ids))
    if unused:
        raise RerateRefused(f"the plan file names subscriptions outside the rerate: {unused}")
    return plans


def _digest(plans: dict[str, Subscription]) -> str:
    canonical = orjson.dumps([subscription_document(plans[s]) for s in sorted(plans)],
                             option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _period_of_calls(calls: Sequence[dict[str, object]], subscription_id: str) -> str:
    periods = {str(c["period"]) for c in calls if c["subscription_id"] == subscription_id}
    if len(periods) != 1:  # one period per subscription starts in any month
        raise RerateRefused(f"{subscription_id}: calls of several periods {sorted(periods)}")
    return periods.pop()


async def _wait_for_history(settings: Settings, timeout_s: float) -> None:
    """Until the history sink's group has committed calls.rated up to its end offsets as
    of now: every call rated before now is then in the history."""
    topic = settings.topics.rated
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        parts = [TopicPartition(topic, p) for p in probe.partitions_for_topic(topic) or ()]
        ends = await probe.end_offsets(parts) if parts else {}
        while True:
            committed = await admin.list_consumer_group_offsets(settings.history_group)
            behind = sum(max(0, end - (committed[tp].offset if tp in committed else 0))
                         for tp, end in ends.items())
            if behind == 0:
                return
            if time.monotonic() > deadline:
                raise RerateRefused(
                    f"the call history is {behind} rated calls behind {topic} after "
                    f"{timeout_s:.0f}s: is the history sink running (group "
                    f"{settings.history_group})?")
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()
        await admin.close()


async def _emit(settings: Settings, result: Rerate, progress: TextIO | None) -> None:
    topic = settings.topics.adjustments
    bar = ProgressBar(len(result.adjustments), "adjustments", 100, progress) if progress else None
    out = producer(settings)
    await out.start()
    try:
        pending = []
        for record in result.adjustments:
            pending.append(await out.send(topic, key=record["subscription_id"].encode(),
                                          value=orjson.dumps(record)))
            if bar is not None:
                bar.advance()
        await asyncio.gather(*pending)
        if bar is not None:
            bar.finish()
    finally:
        await out.stop()
