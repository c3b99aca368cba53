"""SPEC §5 rule by rule, on the reference rater (the oracle of the Redis/Lua engine)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.clock import RatingClock
from rater.rating.model import ReferenceRater
from rater.rating.results import AlertCrossing, CallRating, Rejection
from rater.records import Cdr, Subscription, cdr_fingerprint
from tests.builders import make_cdr, make_subscription, ms

NOW = ms("2026-01-20T12:00:00Z")
RATED_AT = NOW + 5
CLOCK = RatingClock(NOW)
JAN = "2026-01-01"
JAN_END = ms("2026-02-01T00:00:00Z")
GRACE_MS = 72 * 3600 * 1000


def rater_with(*subs: Subscription) -> ReferenceRater:
    rater = ReferenceRater()
    for sub in subs or (make_subscription(),):
        rater.upsert(sub)
    return rater


def rate(
    rater: ReferenceRater,
    cdr: Cdr,
    clock: RatingClock = CLOCK,
    rated_at: int = RATED_AT,
) -> CallRating | Rejection:
    return rater.rate(cdr, cdr_fingerprint(cdr), clock, rated_at)


def rated(rater: ReferenceRater, cdr: Cdr, **kwargs: Any) -> CallRating:
    result = rate(rater, cdr, **kwargs)
    assert isinstance(result, CallRating), result
    return result


def rejected(rater: ReferenceRater, cdr: Cdr, **kwargs: Any) -> Rejection:
    result = rate(rater, cdr, **kwargs)
    assert isinstance(result, Rejection), result
    return result


def snapshot(rater: ReferenceRater) -> Any:
    return copy.deepcopy((rater.counters, rater.user_seconds, rater.rated, rater.alerted))


def used(
    rater: ReferenceRater, zone: str = "domestic", period: str = JAN, sub: str = "sub-1"
) -> int:
    return rater.zone(sub, period, zone).used_included_s  # type: ignore[arg-type]


# --- §5.1 billing period ----------------------------------------------------------------


def test_call_belongs_wholly_to_the_period_of_its_start() -> None:
    rater = rater_with()
    late = rated(rater, make_cdr(started_at="2026-01-31T23:59:59.999Z", duration_s=3600),
                 clock=RatingClock(ms("2026-02-01T01:00:00Z")))
    assert late.period == JAN
    assert late.billable_s == 3600
    assert used(rater, period=JAN) == 600
    assert used(rater, period="2026-02-01") == 0


def test_period_follows_the_anchor_day() -> None:
    rater = rater_with(make_subscription(anchor_day=31))
    clock = RatingClock(ms("2026-03-01T00:00:00Z"))
    assert rated(rater, make_cdr(call_id="a", started_at="2026-02-27T23:59:59Z"), clock=clock
                 ).period == "2026-01-31"
    assert rated(rater, make_cdr(call_id="b", started_at="2026-02-28T00:00:00Z"), clock=clock
                 ).period == "2026-02-28"


def test_new_period_has_a_fresh_pool() -> None:
    rater = rater_with()
    assert rated(rater, make_cdr(call_id="a", duration_s=600)).outcome == "included"
    assert rated(rater, make_cdr(call_id="b")).outcome == "blocked"
    feb = RatingClock(ms("2026-02-02T00:00:00Z"))
    nxt = rated(rater, make_cdr(call_id="c", started_at="2026-02-01T00:00:00Z"), clock=feb)
    assert (nxt.period, nxt.outcome, nxt.included_s) == ("2026-02-01", "included", 60)


# --- §5.2 billable seconds --------------------------------------------------------------


@pytest.mark.parametrize(
    ("increment", "duration", "billable"),
    [("60/60", 61, 120), ("30/6", 10, 30), ("30/6", 31, 36), ("1/1", 61, 61), ("60/60", 0, 0)],
)
def test_billable_seconds_in_rating(increment: str, duration: int, billable: int) -> None:
    rater = rater_with(make_subscription(increment=increment))
    rating = rated(rater, make_cdr(duration_s=duration))
    assert rating.billable_s == billable
    assert rating.included_s == billable
    assert used(rater) == billable


# --- §5.3 what consumes the pool --------------------------------------------------------


@pytest.mark.parametrize(("direction", "emergency"), [("inbound", False), ("outbound", True),
                                                      ("inbound", True)])
@pytest.mark.parametrize("payg", [False, True])
def test_inbound_and_emergency_calls_are_free(direction: str, emergency: bool, payg: bool) -> None:
    rater = rater_with(make_subscription(payg=payg))
    rated(rater, make_cdr(call_id="fill", duration_s=600))  # pool now empty
    before = snapshot(rater)[0]
    rating = rated(rater, make_cdr(call_id="free", duration_s=61, direction=direction,
                                   emergency=emergency))
    assert rating.outcome == "free"
    assert rating.billable_s == 120  # still recorded in call history
    assert (rating.included_s, rating.overage_s, rating.unbilled_s) == (0, 0, 0)
    assert rating.amount_micro == 0
    assert rating.rate_per_minute is None
    assert rating.alerts == ()
    assert snapshot(rater)[0] == before  # no counter moved


def test_free_calls_leave_the_pool_untouched_for_later_calls() -> None:
    rater = rater_with()
    rated(rater, make_cdr(call_id="in", duration_s=3600, direction="inbound"))
    rated(rater, make_cdr(call_id="sos", duration_s=3600, emergency=True))
    assert used(rater) == 0
    assert rated(rater, make_cdr(call_id="out", duration_s=600)).outcome == "included"


def test_free_calls_do_not_count_in_per_user_usage() -> None:
    rater = rater_with()
    rated(rater, make_cdr(call_id="in", direction="inbound"))
    rated(rater, make_cdr(call_id="out", duration_s=61))
    assert rater.user_seconds == {("sub-1", JAN, "user-1", "domestic"): 120}


def test_each_zone_has_its_own_pool() -> None:
    rater = rater_with(make_subscription(domestic_minutes=10, international_minutes=5))
    rated(rater, make_cdr(call_id="d", duration_s=600))
    intl = rated(rater, make_cdr(call_id="i", duration_s=300, zone="international"))
    assert intl.outcome == "included"
    assert used(rater, "domestic") == 600
    assert used(rater, "international") == 300
    assert rated(rater, make_cdr(call_id="i2", zone="international")).outcome == "blocked"


# --- §5.4 pool and licence changes -----------------------------------------------------


def test_pool_is_licences_times_minutes_times_60() -> None:
    rater = rater_with(make_subscription(licenses=3, domestic_minutes=10))
    assert rated(rater, make_cdr(call_id="a", duration_s=1800)).outcome == "included"
    assert rated(rater, make_cdr(call_id="b", duration_s=1)).outcome == "blocked"


def test_licence_increase_resizes_the_current_pool_at_once() -> None:
    rater = rater_with(make_subscription(licenses=1))
    rated(rater, make_cdr(call_id="a", duration_s=540))
    rater.upsert(make_subscription(licenses=2))  # pool 600 -> 1200 s, 660 s left
    rating = rated(rater, make_cdr(call_id="b", duration_s=660))
    assert (rating.outcome, rating.included_s, rating.unbilled_s) == ("included", 660, 0)
    assert used(rater) == 1200


def test_licence_decrease_resizes_the_current_pool_at_once() -> None:
    rater = rater_with(make_subscription(licenses=2))
    rated(rater, make_cdr(call_id="a", duration_s=540))
    rater.upsert(make_subscription(licenses=1))  # pool 1200 -> 600 s, 60 s left
    rating = rated(rater, make_cdr(call_id="b", duration_s=120))
    assert (rating.outcome, rating.included_s, rating.unbilled_s) == ("exhausted", 60, 60)
    rater.upsert(make_subscription(licenses=0))  # overdrawn
    rating = rated(rater, make_cdr(call_id="c"))
    assert (rating.outcome, rating.included_s, rating.unbilled_s) == ("blocked", 0, 60)


def test_zero_licences_means_an_empty_pool() -> None:
    rater = rater_with(make_subscription(licenses=0, payg=True))
    rating = rated(rater, make_cdr(duration_s=30))
    assert (rating.outcome, rating.included_s, rating.overage_s) == ("overage", 0, 60)


# --- §5.5 split and outcomes ------------------------------------------------------------


def test_every_outcome_in_sequence_payg_off() -> None:
    rater = rater_with()
    assert rated(rater, make_cdr(call_id="1", duration_s=540)).outcome == "included"
    crossing = rated(rater, make_cdr(call_id="2", duration_s=120))
    assert (crossing.outcome, crossing.included_s, crossing.unbilled_s) == ("exhausted", 60, 60)
    assert crossing.overage_s == 0 and crossing.amount_micro == 0
    after = rated(rater, make_cdr(call_id="3", duration_s=60))
    assert (after.outcome, after.included_s, after.unbilled_s) == ("blocked", 0, 60)
    counters = rater.zone("sub-1", JAN, "domestic")
    assert (counters.used_included_s, counters.overage_s, counters.unbilled_s) == (600, 0, 120)


def test_overage_outcomes_payg_on() -> None:
    rater = rater_with(make_subscription(payg=True))
    rated(rater, make_cdr(call_id="1", duration_s=540))
    crossing = rated(rater, make_cdr(call_id="2", duration_s=120))
    assert (crossing.outcome, crossing.included_s, crossing.overage_s) == ("overage", 60, 60)
    beyond = rated(rater, make_cdr(call_id="3", duration_s=120))
    assert (beyond.outcome, beyond.included_s, beyond.overage_s) == ("overage", 0, 120)
    counters = rater.zone("sub-1", JAN, "domestic")
    assert (counters.used_included_s, counters.overage_s, counters.unbilled_s) == (600, 180, 0)
    assert counters.overage_micro == 25_000 + 50_000


def test_payg_flip_takes_effect_on_the_next_rating() -> None:
    rater = rater_with()
    rated(rater, make_cdr(call_id="1", duration_s=600))
    assert rated(rater, make_cdr(call_id="2")).outcome == "blocked"
    assert rater.set_payg("sub-1", True) is False
    on = rated(rater, make_cdr(call_id="3"))
    assert (on.outcome, on.overage_s, on.unbilled_s) == ("overage", 60, 0)
    assert rater.set_payg("sub-1", False) is True
    off = rated(rater, make_cdr(call_id="4"))
    assert (off.outcome, off.overage_s, off.unbilled_s) == ("blocked", 0, 60)
    assert rater.subscriptions["sub-1"].payg_enabled is False


def test_set_payg_on_unknown_subscription_returns_none() -> None:
    rater = rater_with()
    assert rater.set_payg("nope", True) is None
    assert "nope" not in rater.subscriptions


def test_set_payg_keeps_the_rest_of_the_subscription() -> None:
    rater = rater_with(make_subscription(licenses=7, anchor_day=15))
    rater.set_payg("sub-1", True)
    sub = rater.subscriptions["sub-1"]
    assert (sub.licenses, sub.billing_anchor_day, sub.payg_enabled) == (7, 15, True)


# --- §5.6 money -------------------------------------------------------------------------


def test_amount_is_rounded_half_up_per_charge() -> None:
    rater = rater_with(make_subscription(increment="1/1", payg=True, licenses=0))
    first = rated(rater, make_cdr(call_id="a", duration_s=61))
    second = rated(rater, make_cdr(call_id="b", duration_s=61))
    assert first.amount_micro == second.amount_micro == 25_417  # 0.0254166.. -> 0.025417
    assert first.rate_per_minute == "0.025"
    # the running total is the sum of rounded charges, not a rounding of the sum (50_833)
    assert rater.zone("sub-1", JAN, "domestic").overage_micro == 50_834


def test_rate_of_the_calls_zone_applies() -> None:
    rater = rater_with(make_subscription(payg=True, licenses=0, international_rate="0.10"))
    rating = rated(rater, make_cdr(zone="international", duration_s=90))
    assert (rating.overage_s, rating.amount_micro, rating.rate_per_minute) == (120, 200_000, "0.10")


def test_no_amount_without_overage() -> None:
    rater = rater_with()
    for call_id, duration in (("a", 600), ("b", 60)):
        rating = rated(rater, make_cdr(call_id=call_id, duration_s=duration))
        assert rating.amount_micro == 0
        assert rating.rate_per_minute is None


# --- §5.8 idempotency -------------------------------------------------------------------


def test_replay_returns_the_identical_rating_and_changes_no_counter() -> None:
    rater = rater_with(make_subscription(payg=True))
    cdr = make_cdr(duration_s=661)
    first = rated(rater, cdr)
    assert first.replayed is False
    before = snapshot(rater)
    again = rated(rater, cdr, rated_at=RATED_AT + 60_000)
    assert again.replayed is True
    assert again.same_as(first)
    assert again.rated_at_ms == first.rated_at_ms  # the original instant, not the replay's
    assert again.amount_micro == first.amount_micro > 0
    assert snapshot(rater) == before


def test_replay_is_identical_after_payg_and_licence_changes() -> None:
    rater = rater_with(make_subscription(payg=True))
    cdr = make_cdr(duration_s=661)
    first = rated(rater, cdr)
    rater.set_payg("sub-1", False)
    rater.upsert(make_subscription(licenses=5, domestic_rate="9.99"))
    again = rated(rater, cdr)
    assert again.same_as(first)
    assert (again.outcome, again.overage_s, again.amount_micro) == ("overage", 120, 50_000)


def test_replay_of_a_free_call_is_identical() -> None:
    rater = rater_with()
    cdr = make_cdr(direction="inbound")
    first = rated(rater, cdr)
    again = rated(rater, cdr)
    assert again.replayed and again.same_as(first) and again.outcome == "free"


def test_same_as_ignores_only_the_replayed_flag() -> None:
    rater = rater_with()
    first = rated(rater, make_cdr(call_id="a"))
    assert first.same_as(replace(first, replayed=True))
    assert not first.same_as(replace(first, rated_at_ms=first.rated_at_ms + 1))
    assert not first.same_as(replace(first, amount_micro=1))
    assert not first.same_as(replace(first, outcome="blocked"))
    assert not first.same_as(replace(first, alerts=(AlertCrossing("domestic", JAN, 80, 1, 1, 0),)))


def test_conflicting_duplicate_is_rejected_and_the_first_stands() -> None:
    rater = rater_with()
    original = make_cdr(duration_s=60)
    first = rated(rater, original)
    before = snapshot(rater)
    for changed in (
        make_cdr(duration_s=61),
        make_cdr(user_id="user-2"),
        make_cdr(zone="international"),
        make_cdr(direction="inbound"),
        make_cdr(emergency=True),
        make_cdr(started_at="2026-01-15T12:00:01Z"),
        make_cdr(destination="+15551234567"),
    ):
        rejection = rejected(rater, changed)
        assert rejection.reason == "conflicting_duplicate"
        assert "call-1" in rejection.detail
    assert snapshot(rater) == before
    again = rated(rater, original)
    assert again.replayed and again.same_as(first)


def test_same_call_id_in_another_subscription_is_not_a_duplicate() -> None:
    rater = rater_with(make_subscription(), make_subscription(subscription_id="sub-2"))
    rated(rater, make_cdr(subscription_id="sub-1"))
    other = rated(rater, make_cdr(subscription_id="sub-2", duration_s=90))
    assert other.replayed is False
    assert other.billable_s == 120
    assert used(rater, sub="sub-2") == 120


# --- §5.9 late and early data -----------------------------------------------------------


def test_accepted_up_to_period_end_plus_grace_inclusive() -> None:
    rater = rater_with()
    cdr = make_cdr(started_at="2026-01-31T23:00:00Z")
    last = RatingClock(JAN_END + GRACE_MS)
    assert rated(rater, cdr, clock=last).period == JAN


def test_rejected_one_ms_after_period_end_plus_grace() -> None:
    rater = rater_with()
    rejection = rejected(rater, make_cdr(started_at="2026-01-01T00:00:00Z"),
                         clock=RatingClock(JAN_END + GRACE_MS + 1))
    assert rejection.reason == "period_closed"
    assert JAN in rejection.detail
    assert "2026-02-04T00:00:00Z" in rejection.detail  # when it closed
    assert rater.counters == {}
    assert rater.rated == {}


def test_default_grace_is_72_hours_and_configurable() -> None:
    assert RatingClock(0).grace_ms == GRACE_MS
    rater = rater_with()
    cdr = make_cdr(started_at="2026-01-31T23:00:00Z")
    assert rejected(rater, cdr, clock=RatingClock(JAN_END + 1, grace_ms=0)).reason == \
        "period_closed"
    assert rated(rater, cdr, clock=RatingClock(JAN_END, grace_ms=0)).period == JAN


def test_future_tolerance_is_300_s_inclusive() -> None:
    rater = rater_with()
    assert RatingClock(0).future_tolerance_ms == 300_000
    ok = make_cdr(call_id="ok", started_at=NOW + 300_000)
    assert rated(rater, ok).period == JAN
    ahead = rejected(rater, make_cdr(call_id="ahead", started_at=NOW + 300_001))
    assert ahead.reason == "future_timestamp"
    assert "300" in ahead.detail
    tight = RatingClock(NOW, future_tolerance_ms=0)
    assert rejected(rater, make_cdr(call_id="x", started_at=NOW + 1), clock=tight).reason == \
        "future_timestamp"


# --- §5.10 order of checks --------------------------------------------------------------


def test_unknown_subscription_comes_first() -> None:
    rater = rater_with()
    future = make_cdr(subscription_id="ghost", started_at=NOW + 3_600_000)
    rejection = rejected(rater, future)
    assert rejection.reason == "unknown_subscription"
    assert "ghost" in rejection.detail
    stale = make_cdr(subscription_id="ghost", started_at="2025-01-01T00:00:00Z")
    assert rejected(rater, stale).reason == "unknown_subscription"


def test_future_timestamp_before_period_closed() -> None:
    """Both hold only with a negative grace: the order still says future_timestamp."""
    rater = rater_with()
    cdr = make_cdr(started_at="2026-01-31T23:00:00Z")
    clock = RatingClock(ms("2026-01-31T22:00:00Z"), grace_ms=-3 * 3600 * 1000)
    assert rejected(rater, cdr, clock=clock).reason == "future_timestamp"
    assert rejected(rater, cdr, clock=RatingClock(clock.now_ms + 3_600_000,
                                                  grace_ms=-3 * 3600 * 1000)).reason == \
        "period_closed"


def test_future_timestamp_before_duplicates() -> None:
    rater = rater_with()
    cdr = make_cdr(started_at=NOW)
    rated(rater, cdr)
    earlier = RatingClock(NOW - 3_600_000)
    assert rejected(rater, cdr, clock=earlier).reason == "future_timestamp"
    assert rejected(rater, make_cdr(started_at=NOW, duration_s=5), clock=earlier).reason == \
        "future_timestamp"


def test_period_closed_before_duplicates() -> None:
    rater = rater_with()
    cdr = make_cdr()
    rated(rater, cdr)
    closed = RatingClock(JAN_END + GRACE_MS + 1)
    assert rejected(rater, cdr, clock=closed).reason == "period_closed"  # not a replay
    assert rejected(rater, make_cdr(duration_s=5), clock=closed).reason == "period_closed"


def test_rejections_change_nothing() -> None:
    rater = rater_with()
    rated(rater, make_cdr(call_id="seed"))
    before = snapshot(rater)
    rejected(rater, make_cdr(call_id="u", subscription_id="ghost"))
    rejected(rater, make_cdr(call_id="f", started_at=NOW + 301_000))
    rejected(rater, make_cdr(call_id="p", started_at="2025-11-01T00:00:00Z"))
    rejected(rater, make_cdr(call_id="seed", duration_s=1))
    assert snapshot(rater) == before
    # a rejected call_id can still be rated later, once valid
    assert rated(rater, make_cdr(call_id="f")).replayed is False


# --- §5.11 thresholds -------------------------------------------------------------------


def test_alerts_at_80_and_100_percent_once_each() -> None:
    rater = rater_with(make_subscription(payg=True))  # pool 600 s
    assert rated(rater, make_cdr(call_id="1", duration_s=420)).alerts == ()  # 70 %
    at80 = rated(rater, make_cdr(call_id="2", duration_s=60), rated_at=RATED_AT + 1)  # 80 %
    assert at80.alerts == (AlertCrossing("domestic", JAN, 80, 480, 600, RATED_AT + 1),)
    assert rated(rater, make_cdr(call_id="3", duration_s=60)).alerts == ()  # 90 %
    at100 = rated(rater, make_cdr(call_id="4", duration_s=120), rated_at=RATED_AT + 2)
    assert at100.alerts == (AlertCrossing("domestic", JAN, 100, 600, 600, RATED_AT + 2),)
    assert rated(rater, make_cdr(call_id="5", duration_s=600)).alerts == ()  # overage only
    assert rater.alerted == {("sub-1", JAN, "domestic", 80), ("sub-1", JAN, "domestic", 100)}


def test_one_call_crossing_both_thresholds_emits_both_in_order() -> None:
    rater = rater_with()
    rating = rated(rater, make_cdr(duration_s=700))
    assert [a.threshold for a in rating.alerts] == [80, 100]
    assert all(a.used_included_s == 600 and a.included_s == 600 for a in rating.alerts)


def test_alerts_are_reemitted_identically_on_replay_of_the_crossing_cdr() -> None:
    rater = rater_with()
    crossing = make_cdr(call_id="cross", duration_s=480)
    first = rated(rater, crossing)
    assert [a.threshold for a in first.alerts] == [80]
    rated(rater, make_cdr(call_id="later", duration_s=60))
    again = rated(rater, crossing, rated_at=RATED_AT + 999)
    assert again.alerts == first.alerts
    assert again.replayed


def test_replay_of_a_non_crossing_cdr_emits_no_alert() -> None:
    rater = rater_with()
    rated(rater, make_cdr(call_id="a", duration_s=480))
    quiet = make_cdr(call_id="b", duration_s=60)
    assert rated(rater, quiet).alerts == ()
    assert rated(rater, quiet).alerts == ()


def test_zero_pool_has_no_alerts() -> None:
    rater = rater_with(make_subscription(international_minutes=0, payg=True))
    for n in range(3):
        rating = rated(rater, make_cdr(call_id=f"i{n}", zone="international", duration_s=600))
        assert rating.alerts == ()
    assert rater.alerted == set()


def test_alerts_are_per_zone_and_per_period() -> None:
    rater = rater_with(make_subscription(domestic_minutes=10, international_minutes=10))
    dom = rated(rater, make_cdr(call_id="d", duration_s=600))
    intl = rated(rater, make_cdr(call_id="i", duration_s=600, zone="international"))
    assert [(a.zone, a.threshold) for a in dom.alerts] == [("domestic", 80), ("domestic", 100)]
    assert [(a.zone, a.threshold) for a in intl.alerts] == [
        ("international", 80), ("international", 100)]
    feb = RatingClock(ms("2026-02-10T00:00:00Z"))
    nxt = rated(rater, make_cdr(call_id="f", started_at="2026-02-05T00:00:00Z", duration_s=600),
                clock=feb)
    assert [(a.period, a.threshold) for a in nxt.alerts] == [
        ("2026-02-01", 80), ("2026-02-01", 100)]


def test_free_calls_never_emit_alerts() -> None:
    rater = rater_with()
    rating = rated(rater, make_cdr(duration_s=3600, direction="inbound"))
    assert rating.alerts == ()
    assert rater.alerted == set()


def test_no_second_alert_after_licence_increase_and_refill() -> None:
    rater = rater_with()
    rated(rater, make_cdr(call_id="a", duration_s=480))  # 80 % of 600
    rater.upsert(make_subscription(licenses=2))  # 480 of 1200 = 40 %
    rated(rater, make_cdr(call_id="b", duration_s=480))  # 960 of 1200 = 80 % again
    assert rater.zone("sub-1", JAN, "domestic").used_included_s == 960
    assert rated(rater, make_cdr(call_id="c", duration_s=60)).alerts == ()
    last = rated(rater, make_cdr(call_id="d", duration_s=180))  # 1200: first 100 %
    assert [(a.threshold, a.used_included_s, a.included_s) for a in last.alerts] == [
        (100, 1200, 1200)]


# --- a random workload ------------------------------------------------------------------

calls = st.lists(
    st.tuples(
        st.integers(0, 900),  # duration
        st.sampled_from(["domestic", "international"]),
        st.sampled_from(["outbound", "outbound", "outbound", "inbound"]),
        st.booleans(),  # flip PAYG before this call
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(workload=calls, licenses=st.integers(0, 3), increment=st.sampled_from(
    ["60/60", "30/6", "1/1", "60/1"]))
def test_counters_are_sums_of_ratings_and_replays_change_nothing(
    workload: list[tuple[int, str, str, bool]], licenses: int, increment: str
) -> None:
    rater = rater_with(make_subscription(licenses=licenses, increment=increment))
    cdrs: list[Cdr] = []
    ratings: list[CallRating] = []
    payg = False
    for n, (duration, zone, direction, flip) in enumerate(workload):
        if flip:
            payg = not payg
            rater.set_payg("sub-1", payg)
        cdr = make_cdr(call_id=f"c{n}", duration_s=duration, zone=zone, direction=direction)
        rating = rated(rater, cdr)
        cdrs.append(cdr)
        ratings.append(rating)
        if rating.outcome != "free":
            assert rating.included_s + rating.overage_s + rating.unbilled_s == rating.billable_s
            assert rating.overage_s == 0 or payg
            assert rating.unbilled_s == 0 or not payg
    for zone in ("domestic", "international"):
        mine = [r for c, r in zip(cdrs, ratings, strict=True) if c.zone == zone]
        counters = rater.zone("sub-1", JAN, zone)  # type: ignore[arg-type]
        pool = rater.subscriptions["sub-1"].included_s(zone)  # type: ignore[arg-type]
        assert counters.used_included_s == sum(r.included_s for r in mine) <= pool
        assert counters.overage_s == sum(r.overage_s for r in mine)
        assert counters.unbilled_s == sum(r.unbilled_s for r in mine)
        assert counters.overage_micro == sum(r.amount_micro for r in mine)
        thresholds = [a.threshold for r in mine for a in r.alerts]
        assert len(thresholds) == len(set(thresholds))
    before = snapshot(rater)
    for cdr, first in zip(cdrs, ratings, strict=True):
        again = rated(rater, cdr)
        assert again.replayed and again.same_as(first)
    assert snapshot(rater) == before
