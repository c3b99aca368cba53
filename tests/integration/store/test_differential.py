"""Property test: random CDR sequences give identical results from Lua-in-Redis and the model.

Random increments, anchor days (29-31 included), leap-year Februaries, licence
changes and PAYG flips between batches (independent of each other), duplicates and
conflicting duplicates, inbound and emergency calls, late and future timestamps
against a random grace and future tolerance, several subscriptions. Counters and
per-user seconds are compared at the end, period by period.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rater.rating.clock import RatingClock
from rater.rating.results import CallRating, Rejection
from rater.records import Cdr
from rater.store import RedisStore
from tests.builders import make_cdr, make_subscription, ms
from tests.integration.store.engines import ModelEngine, RedisEngine

BASES = [ms("2024-02-27T00:00:00Z"), ms("2026-01-30T00:00:00Z"), ms("2028-02-28T12:00:00Z"),
         ms("2025-12-31T23:00:00Z")]
DAY = 86_400_000


@dataclass(frozen=True)
class Plan:
    anchor: int
    increment: str
    licenses: int
    minutes: tuple[int, int]
    rates: tuple[str, str]
    payg: bool


plans = st.builds(
    Plan,
    anchor=st.sampled_from([1, 2, 15, 28, 29, 30, 31]),
    increment=st.sampled_from(["60/60", "30/6", "1/1", "60/1", "6/6", "1/60"]),
    licenses=st.integers(0, 3),
    minutes=st.tuples(st.integers(0, 5), st.integers(0, 3)),
    rates=st.tuples(st.sampled_from(["0.025", "0.01", "0", "1.999999", "0.000007"]),
                    st.sampled_from(["0.1", "0.333333", "2"])),
    payg=st.booleans(),
)

calls = st.tuples(
    st.integers(0, 2),  # subscription index
    st.integers(0, 12),  # call id (small range -> duplicates)
    st.sampled_from([0, 1, 5, 29, 30, 31, 59, 60, 61, 90, 119, 120, 121, 600, 3601]),
    st.sampled_from(["outbound", "outbound", "outbound", "inbound"]),
    st.sampled_from(["domestic", "domestic", "international"]),
    st.sampled_from([False, False, False, False, True]),  # emergency
    st.integers(-40 * DAY, 2 * DAY),  # offset from the batch clock
    st.integers(0, 1),  # user
)

batches = st.lists(
    st.tuples(
        st.lists(calls, min_size=1, max_size=12),
        st.integers(0, 3 * DAY),  # clock advance before the batch
        st.sampled_from([None, "payg_on", "payg_off", "licences"]),
    ),
    min_size=1,
    max_size=6,
)


def same(a: CallRating | Rejection, b: CallRating | Rejection) -> bool:
    if isinstance(a, Rejection) or isinstance(b, Rejection):
        return isinstance(a, Rejection) and isinstance(b, Rejection) and a.reason == b.reason
    return a.same_as(b) and a.replayed == b.replayed


GRACES_MS = [0, 3_600_000, 259_200_000, 10 * DAY]
FUTURE_TOLERANCES_MS = [0, 300_000, DAY]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan_list=st.lists(plans, min_size=3, max_size=3), base=st.sampled_from(BASES),
       script=batches, grace_ms=st.sampled_from(GRACES_MS),
       future_ms=st.sampled_from(FUTURE_TOLERANCES_MS))
async def test_lua_matches_reference_model(
    store: RedisStore, plan_list: list[Plan], base: int, script: list, grace_ms: int,
    future_ms: int,
) -> None:
    tag = uuid.uuid4().hex[:8]
    model, redis = ModelEngine(), RedisEngine(store)
    subs = []
    for i, plan in enumerate(plan_list):
        sub = make_subscription(
            subscription_id=f"{tag}-s{i}", anchor_day=plan.anchor, increment=plan.increment,
            licenses=plan.licenses, domestic_minutes=plan.minutes[0],
            international_minutes=plan.minutes[1], domestic_rate=plan.rates[0],
            international_rate=plan.rates[1], payg=plan.payg,
        )
        subs.append(sub)
        await model.upsert(sub)
        await redis.upsert(sub)
    now = base
    for batch_no, (batch, advance, change) in enumerate(script):
        now += advance
        target = subs[batch_no % len(subs)]
        if change in ("payg_on", "payg_off"):
            await model.set_payg(target.subscription_id, change == "payg_on")
            await redis.set_payg(target.subscription_id, change == "payg_on")
        elif change == "licences":
            target = model.model.subscriptions[target.subscription_id]  # PAYG as it is now
            resized = make_subscription(
                subscription_id=target.subscription_id, anchor_day=target.billing_anchor_day,
                increment=str(target.plan.billing_increment), licenses=(batch_no % 4),
                domestic_minutes=target.plan.included_minutes_per_license["domestic"],
                international_minutes=target.plan.included_minutes_per_license["international"],
                domestic_rate=str(target.plan.payg_rate_per_minute["domestic"]),
                international_rate=str(target.plan.payg_rate_per_minute["international"]),
                payg=target.payg_enabled,
            )
            await model.upsert(resized)
            await redis.upsert(resized)
        cdrs: list[Cdr] = [
            make_cdr(call_id=f"c{call}", subscription_id=f"{tag}-s{sub_i}", user_id=f"u{user}",
                     started_at=now + offset, duration_s=duration, direction=direction,
                     zone=zone, emergency=emergency)
            for sub_i, call, duration, direction, zone, emergency, offset, user in batch
        ]
        clock = RatingClock(now, grace_ms, future_ms)
        expected = await model.rate(cdrs, clock, now)
        actual = await redis.rate(cdrs, clock, now)
        for cdr, want, got in zip(cdrs, expected, actual, strict=True):
            assert same(want, got), f"{cdr}\nmodel: {want}\nredis: {got}"
    for sub in subs:
        for (sub_id, period, zone), counters in model.model.counters.items():
            if sub_id != sub.subscription_id:
                continue
            snapshot = await store.snapshot(sub_id, _inside(period))
            assert snapshot is not None and snapshot.period == period
            assert snapshot.zones[zone] == counters, (period, zone)
    periods = {(sub_id, period) for sub_id, period, _ in model.model.counters}
    for sub_id, period in periods:
        expected: dict[str, dict[str, int]] = {}
        for (s_id, p, user, zone), seconds in model.model.user_seconds.items():
            if (s_id, p) == (sub_id, period) and seconds:
                expected.setdefault(user, {"domestic": 0, "international": 0})[zone] = seconds
        assert await store.user_seconds(sub_id, period) == expected, (sub_id, period)


def _inside(period: str) -> int:
    return ms(f"{period}T00:00:00Z")
