"""Every numbered rule of SPEC §5, run on the reference model and on the Lua script in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rater.rating.clock import RatingClock
from rater.rating.results import CallRating, Rejection
from rater.rating.subscription_rules import ImmutableFieldError
from rater.store import RedisStore
from tests.builders import make_cdr, make_subscription, ms
from tests.integration.store.engines import Engine, ModelEngine, RedisEngine

NOW = ms("2026-01-20T00:00:00Z")
CLOCK = RatingClock(NOW)


@pytest.fixture(params=["model", "redis"])
async def engine(request: pytest.FixtureRequest, store: RedisStore) -> AsyncIterator[Engine]:
    yield ModelEngine() if request.param == "model" else RedisEngine(store)


async def rate_one(engine: Engine, clock: RatingClock = CLOCK, **cdr: object) -> CallRating:
    [result] = await engine.rate([make_cdr(**cdr)], clock, clock.now_ms)  # type: ignore[arg-type]
    assert isinstance(result, CallRating), result
    return result


async def reject_one(engine: Engine, clock: RatingClock = CLOCK, **cdr: object) -> Rejection:
    [result] = await engine.rate([make_cdr(**cdr)], clock, clock.now_ms)  # type: ignore[arg-type]
    assert isinstance(result, Rejection), result
    return result


@pytest.mark.parametrize(
    ("anchor", "started_at", "period"),
    [
        (1, "2026-01-15T12:00:00Z", "2026-01-01"),
        (31, "2026-02-28T00:00:00Z", "2026-02-28"),
        (31, "2026-02-27T23:59:59Z", "2026-01-31"),
        (31, "2026-03-30T10:00:00Z", "2026-02-28"),
        (30, "2024-02-29T10:00:00Z", "2024-02-29"),
        (15, "2026-01-14T23:59:59.999Z", "2025-12-15"),
    ],
)
async def test_rule_1_period_by_anchor_day(
    engine: Engine, anchor: int, started_at: str, period: str
) -> None:
    await engine.upsert(make_subscription(anchor_day=anchor))
    clock = RatingClock(ms(started_at) + 60_000)
    assert (await rate_one(engine, clock, started_at=started_at)).period == period


@pytest.mark.parametrize(
    ("increment", "duration", "billable"),
    [("60/60", 61, 120), ("30/6", 10, 30), ("30/6", 31, 36), ("1/1", 61, 61), ("60/60", 0, 0)],
)
async def test_rule_2_billable_seconds(
    engine: Engine, increment: str, duration: int, billable: int
) -> None:
    await engine.upsert(make_subscription(increment=increment))
    assert (await rate_one(engine, duration_s=duration)).billable_s == billable


@pytest.mark.parametrize(("direction", "emergency"), [("inbound", False), ("outbound", True)])
async def test_rule_3_inbound_and_emergency_are_free(
    engine: Engine, direction: str, emergency: bool
) -> None:
    await engine.upsert(make_subscription(domestic_minutes=0, payg=True))
    rating = await rate_one(engine, direction=direction, emergency=emergency, duration_s=300)
    assert (rating.outcome, rating.included_s, rating.overage_s, rating.amount_micro) == (
        "free", 0, 0, 0)
    # the pool is untouched: a following outbound call of a zero pool goes wholly to overage
    follow = await rate_one(engine, call_id="c2", duration_s=60)
    assert (follow.outcome, follow.overage_s) == ("overage", 60)


async def test_rule_4_licence_change_resizes_pool_at_once(engine: Engine) -> None:
    await engine.upsert(make_subscription(licenses=1, domestic_minutes=1))
    assert (await rate_one(engine, call_id="a", duration_s=60)).included_s == 60
    assert (await rate_one(engine, call_id="b", duration_s=60)).outcome == "blocked"
    await engine.upsert(make_subscription(licenses=3, domestic_minutes=1))
    rating = await rate_one(engine, call_id="c", duration_s=120)
    assert (rating.included_s, rating.outcome) == (120, "included")


async def test_rule_5_split_outcomes(engine: Engine) -> None:
    await engine.upsert(make_subscription(domestic_minutes=2))
    first = await rate_one(engine, call_id="a", duration_s=90)
    assert (first.included_s, first.unbilled_s, first.outcome) == (120, 0, "included")
    await engine.upsert(make_subscription(domestic_minutes=3))
    crossing = await rate_one(engine, call_id="b", duration_s=120)
    assert (crossing.included_s, crossing.unbilled_s, crossing.outcome) == (60, 60, "exhausted")
    blocked = await rate_one(engine, call_id="c", duration_s=30)
    assert (blocked.included_s, blocked.unbilled_s, blocked.outcome) == (0, 60, "blocked")
    await engine.set_payg("sub-1", True)
    overage = await rate_one(engine, call_id="d", duration_s=61)
    assert (overage.included_s, overage.overage_s, overage.outcome) == (0, 120, "overage")


async def test_rule_6_money_half_up_six_places(engine: Engine) -> None:
    await engine.upsert(make_subscription(domestic_minutes=0, payg=True, increment="1/1",
                                          domestic_rate="0.025"))
    # 61 s x 0.025 / 60 = 0.0254166... -> 0.025417
    assert (await rate_one(engine, call_id="a", duration_s=61)).amount_micro == 25_417
    # 1 s x 0.00003 / 60 = 0.0000005 -> half-up to 0.000001
    await engine.upsert(make_subscription(domestic_minutes=0, payg=True, increment="1/1",
                                          domestic_rate="0.00003"))
    assert (await rate_one(engine, call_id="b", duration_s=1)).amount_micro == 1
    await engine.upsert(make_subscription(domestic_minutes=0, payg=True, increment="1/1",
                                          domestic_rate="999999.999999"))
    big = await rate_one(engine, call_id="c", duration_s=86_400)
    assert big.amount_micro == 1_439_999_999_998_560  # 86400 x 999999.999999 / 60 exactly


async def test_rule_7_charge_carries_the_rate(engine: Engine) -> None:
    await engine.upsert(make_subscription(domestic_minutes=0, payg=True, domestic_rate="0.025"))
    rating = await rate_one(engine, duration_s=60)
    assert (rating.overage_s, rating.rate_per_minute, rating.amount_micro) == (60, "0.025", 25_000)


async def test_rule_8_replay_is_identical_and_conflict_is_rejected(engine: Engine) -> None:
    await engine.upsert(make_subscription(domestic_minutes=1, payg=True))
    first = await rate_one(engine, call_id="x", duration_s=90)
    later = RatingClock(NOW + 5_000)
    again = await rate_one(engine, later, call_id="x", duration_s=90)
    assert again.replayed and again.same_as(first)
    conflict = await reject_one(engine, later, call_id="x", duration_s=91)
    assert conflict.reason == "conflicting_duplicate"
    # the first one stands: counters saw only it
    follow = await rate_one(engine, call_id="y", duration_s=60)
    assert (follow.included_s, follow.overage_s) == (0, 60)


async def test_rule_9_late_and_future(engine: Engine) -> None:
    await engine.upsert(make_subscription())
    # period 2026-01-01 ends 2026-02-01; grace 72 h -> accepted until 2026-02-04T00:00:00Z
    edge = RatingClock(ms("2026-02-04T00:00:00Z"))
    assert (await rate_one(engine, edge, call_id="a")).period == "2026-01-01"
    late = RatingClock(ms("2026-02-04T00:00:00.001Z"))
    assert (await reject_one(engine, late, call_id="b")).reason == "period_closed"
    ahead = await reject_one(engine, CLOCK, call_id="c", started_at=NOW + 300_001)
    assert ahead.reason == "future_timestamp"
    assert (await rate_one(engine, CLOCK, call_id="d", started_at=NOW + 300_000)).period


async def test_rule_10_check_order(engine: Engine) -> None:
    # unknown subscription wins over future; future wins over closed; closed over duplicate
    unknown = await reject_one(engine, subscription_id="nobody", started_at=NOW + 10**9)
    assert unknown.reason == "unknown_subscription"
    await engine.upsert(make_subscription())
    await rate_one(engine, call_id="dup", started_at="2026-01-02T00:00:00Z")
    late = RatingClock(ms("2026-03-01T00:00:00Z"))
    closed = await reject_one(engine, late, call_id="dup", started_at="2026-01-02T00:00:00Z",
                              duration_s=5)
    assert closed.reason == "period_closed"


async def test_rule_11_thresholds_once_and_replayed(engine: Engine) -> None:
    await engine.upsert(make_subscription(domestic_minutes=10, increment="1/1"))
    below = await rate_one(engine, call_id="a", duration_s=479)
    assert below.alerts == ()
    crossing = await rate_one(engine, call_id="b", duration_s=1)
    assert [(a.threshold, a.used_included_s, a.included_s) for a in crossing.alerts] == [
        (80, 480, 600)]
    assert (await rate_one(engine, call_id="c", duration_s=10)).alerts == ()
    replay = await rate_one(engine, RatingClock(NOW + 1000), call_id="b", duration_s=1)
    assert replay.alerts == crossing.alerts
    full = await rate_one(engine, call_id="d", duration_s=500)
    assert [a.threshold for a in full.alerts] == [100]
    await engine.upsert(make_subscription(domestic_minutes=0, international_minutes=0,
                                          increment="1/1"))
    assert (await rate_one(engine, call_id="e", zone="international")).alerts == ()


@pytest.mark.parametrize("change", [{"billing_account_id": "ba-2"}, {"currency": "USD"}])
async def test_billing_account_and_currency_never_change(
    engine: Engine, change: dict[str, str]
) -> None:
    """docs/design.md: a replay re-emits with the subscription's current billing account
    and currency, so an upsert changing either is refused, by both engines alike, and the
    replay after it is still identical."""
    await engine.upsert(make_subscription(payg=True, domestic_minutes=1))
    first = await rate_one(engine, call_id="c-1", duration_s=150)
    assert first.overage_s == 120  # 150 s bill 180 s at 60/60; the pool holds 60
    field_name = next(iter(change))
    with pytest.raises(ImmutableFieldError, match=field_name):
        await engine.upsert(make_subscription(payg=True, domestic_minutes=1, **change))
    await engine.upsert(make_subscription(payg=True, domestic_minutes=2))  # allowed
    again = await rate_one(engine, call_id="c-1", duration_s=150)
    assert again.replayed and again.same_as(first)
    assert (again.billing_account_id, again.currency) == ("ba-1", "EUR")
