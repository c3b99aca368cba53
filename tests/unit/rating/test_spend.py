"""SPEC §14, the pure rules: the most overage a budget buys, a reservation's worst case, the
limit in session grants and in §6 decisions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rater.rating.clock import RatingClock
from rater.rating.decision import PoolState, decide
from rater.rating.increments import billable_seconds
from rater.rating.model import ReferenceRater
from rater.rating.money import overage_amount, rate_to_micro, to_micro
from rater.rating.sessions import Grant, SessionPolicy, grant, terminate_grant
from rater.rating.spend import SpendTerms, max_overage_within, reservation_amount
from rater.records import CallAttempt, Increment, SessionInitial, cdr_fingerprint
from tests.builders import make_cdr, make_subscription, ms

INC = Increment(60, 60)
RATE = Decimal("0.025")  # 25,000 micro-units a minute: 60 s cost 0.025000
increments = st.sampled_from([Increment(60, 60), Increment(30, 6), Increment(1, 1),
                              Increment(60, 1), Increment(6, 6), Increment(1, 60)])
# every rate the schema admits: at most 6 decimal places, below 1,000,000 a minute
rates = st.integers(1, 999_999_999_999).map(lambda micro: Decimal(micro) / 1_000_000)


def charge(seconds: int, rate: Decimal) -> int:
    """SPEC §5.6 in micro-units, as rating charges it."""
    return to_micro(overage_amount(seconds, rate))


# ------------------------------------------------------ max_overage_within ---

@given(budget=st.integers(0, 10**15), rate=rates)
def test_max_overage_is_the_most_seconds_whose_charge_fits(budget: int, rate: Decimal) -> None:
    most = max_overage_within(budget, rate_to_micro(rate))
    assert most is not None
    assert charge(most, rate) <= budget
    assert charge(most + 1, rate) > budget


@given(budget=st.integers(0, 5_000), rate=st.integers(1, 200).map(lambda m: Decimal(m) / 10**6))
def test_max_overage_at_rates_so_small_that_seconds_round_to_nothing(
        budget: int, rate: Decimal) -> None:
    most = max_overage_within(budget, rate_to_micro(rate))
    assert most is not None
    assert charge(most, rate) <= budget < charge(most + 1, rate)


def test_max_overage_examples() -> None:
    assert max_overage_within(1_000_000, 25_000) == 2400  # 1.00 at 0.025/min: 40 minutes
    assert max_overage_within(24_999, 25_000) == 59  # 59 s cost 0.024583
    assert max_overage_within(0, 25_000) == 0  # 1 s costs 0.000417
    assert max_overage_within(0, 29) == 1  # 1 s at 0.000029/min rounds to 0
    assert max_overage_within(-5, 25_000) == 0
    assert max_overage_within(10**15, 0) is None  # a free rate: no cap


# ------------------------------------------------------- reservation_amount ---

def test_a_reservation_costs_what_the_pool_cannot_carry() -> None:
    assert reservation_amount(300, 600, RATE) == 0
    assert reservation_amount(300, 240, RATE) == 25_000  # 60 s beyond the pool
    assert reservation_amount(300, 0, RATE) == 125_000
    assert reservation_amount(300, -120, RATE) == 125_000  # an overrun pool carries nothing
    assert reservation_amount(61, 0, RATE) == 25_417  # rounded like a charge (0.025417)


@given(reserved=st.integers(0, 200_000), available=st.integers(-10**6, 10**6), rate=rates)
def test_a_reservation_costs_the_charge_of_its_overage(reserved: int, available: int,
                                                        rate: Decimal) -> None:
    overage = max(0, reserved - max(0, available))
    assert reservation_amount(reserved, available, rate) == charge(overage, rate)


# -------------------------------------------------------------- SpendTerms ---

def test_at_the_limit_counts_spent_and_the_other_sessions() -> None:
    assert not SpendTerms(RATE).at_limit  # no limit
    assert SpendTerms(RATE, 1_000_000, 600_000, 400_000).at_limit
    assert not SpendTerms(RATE, 1_000_000, 600_000, 399_999).at_limit
    assert SpendTerms(RATE, 0).at_limit  # a limit of 0 has been reached at once
    assert SpendTerms(RATE, 1_000_000, 2_000_000).budget_micro == -1_000_000
    assert SpendTerms(RATE).budget_micro is None


def test_the_cap_is_the_longest_call_whose_worst_case_fits() -> None:
    terms = SpendTerms(RATE, 1_000_000, 500_000, 0)  # 0.50 left: 20 minutes of overage
    assert terms.cap(600, INC) == 600 + 1200
    assert terms.cap(-300, INC) == 1200  # an overrun pool carries nothing
    assert SpendTerms(RATE, 1_000_000, 0, 999_999).cap(0, INC) == 0  # 0.000001 buys < 60 s
    assert SpendTerms(RATE).cap(0, INC) is None
    assert SpendTerms(Decimal(0), 1, 0, 0).cap(0, INC) is None


def test_held_amounts_stay_within_what_the_budget_has() -> None:
    assert SpendTerms(RATE).held(300, 0) == 125_000  # no limit: the worst case
    assert SpendTerms(RATE, 1_000_000, 900_000, 0).held(300, 0) == 100_000
    assert SpendTerms(RATE, 1_000_000, 900_000, 200_000).held(300, 0) == 0
    assert SpendTerms(RATE, 1_000_000, 0, 0).held(300, 0) == 125_000


# ----------------------------------------------------------- session grants ---

def test_at_the_limit_an_initial_request_is_blocked_whatever_payg() -> None:
    at_limit = SpendTerms(RATE, 1_000_000, 1_000_000)
    for payg in (True, False):
        assert grant(True, 0, 300, 600, payg, INC, at_limit) == Grant(
            "block", 0, 0, True, "spend_limit")


def test_at_the_limit_an_update_keeps_its_used_seconds_and_ends() -> None:
    at_limit = SpendTerms(RATE, 1_000_000, 600_000, 400_000)
    assert grant(False, 130, 300, 0, True, INC, at_limit) == Grant(
        "permit", 130, 180, True, "spend_limit", 0)
    # with PAYG off the held seconds are capped at what the pool has, as for `exhausted`
    assert grant(False, 130, 300, 120, False, INC, at_limit) == Grant(
        "permit", 130, 120, True, "spend_limit", 0)


def test_payg_grants_are_capped_so_their_worst_case_fits_the_limit() -> None:
    terms = SpendTerms(RATE, 1_000_000, 900_000, 50_000)  # 0.05 left: 120 s of overage
    # 60 s in the pool + 120 s beyond it
    assert grant(True, 0, 300, 60, True, INC, terms) == Grant(
        "permit", 180, 180, True, "spend_limit", 50_000)
    # asked within the cap: as without a limit, priced
    assert grant(True, 0, 120, 60, True, INC, terms) == Grant(
        "permit", 120, 120, False, "payg", 25_000)
    assert grant(True, 0, 60, 60, True, INC, terms) == Grant(
        "permit", 60, 60, False, "included", 0)
    # an update whose cap is not above its used seconds keeps them and ends
    assert grant(False, 200, 300, 60, True, INC, terms) == Grant(
        "permit", 200, 240, True, "spend_limit", 50_000)
    # nothing fits at all (0.000001 left, no pool): blocked
    tight = SpendTerms(RATE, 1_000_000, 999_999)
    assert grant(True, 0, 300, 0, True, INC, tight) == Grant("block", 0, 0, True, "spend_limit")


def test_payg_off_below_the_limit_is_the_pool_rule_and_reserves_no_amount() -> None:
    terms = SpendTerms(RATE, 1_000_000, 900_000)
    assert grant(True, 0, 300, 600, False, INC, terms) == grant(True, 0, 300, 600, False, INC)
    assert grant(True, 0, 300, 0, False, INC, terms) == Grant("block", 0, 0, True, "exhausted")


def test_without_a_limit_the_reservation_is_priced_all_the_same() -> None:
    terms = SpendTerms(RATE)
    assert grant(True, 0, 300, 120, True, INC, terms) == Grant(
        "permit", 300, 300, False, "payg", 75_000)
    assert terminate_grant(130, 0, True, INC, terms) == Grant(
        "permit", 130, 180, True, "terminated", 75_000)


def test_terminate_reprices_within_the_budget() -> None:
    terms = SpendTerms(RATE, 1_000_000, 950_000, 0)
    assert terminate_grant(130, 0, True, INC, terms) == Grant(
        "permit", 130, 180, True, "terminated", 50_000)


@given(inc=increments, used=st.integers(0, 3600), requested=st.integers(1, 3600),
       available=st.integers(-600, 7200), rate=st.sampled_from(["0.025", "0.000007", "1.5"]),
       limit=st.integers(0, 3_000_000), spent=st.integers(0, 3_000_000),
       others=st.integers(0, 1_000_000), initial=st.booleans())
def test_a_payg_grant_never_reserves_more_than_the_limit_leaves(
        inc: Increment, used: int, requested: int, available: int, rate: str, limit: int,
        spent: int, others: int, initial: bool) -> None:
    used = 0 if initial else used
    terms = SpendTerms(Decimal(rate), limit, spent, others)
    decided = grant(initial, used, requested, available, True, inc, terms)
    budget = limit - spent - others
    assert decided.reserved_micro <= max(0, budget)
    if decided.decision == "permit" and decided.reason != "spend_limit":
        assert decided.authorised_s == used + requested  # not capped: all that was asked
    if decided.reason == "spend_limit" and decided.decision == "permit" and \
            decided.authorised_s is not None and decided.authorised_s > used:
        # capped: one increment more would cost more than the budget
        longer = billable_seconds(decided.authorised_s, inc) + inc.step_s
        assert terms.amount(longer, available) > budget


# ------------------------------------------------------------ §6 decisions ---

def attempt(direction: str = "outbound", emergency: bool = False) -> CallAttempt:
    return CallAttempt("a1", "sub-1", "u1", direction, "domestic", emergency,  # type: ignore[arg-type]
                       None)


def test_decisions_block_a_user_at_the_limit_payg_on_or_off() -> None:
    at_limit = SpendTerms(RATE, 1_000_000, 1_000_000)
    for payg in (True, False):
        decided = decide(attempt(), PoolState(600, payg, INC, at_limit))
        assert (decided.decision, decided.reason) == ("block", "spend_limit")
    assert decide(attempt("inbound"), PoolState(0, True, INC, at_limit)).reason == "free"
    assert decide(attempt(emergency=True), PoolState(0, True, INC, at_limit)).reason == "free"


def test_decisions_with_payg_on_and_a_limit_give_the_longest_call_it_allows() -> None:
    terms = SpendTerms(RATE, 1_000_000, 900_000, 50_000)  # 120 s of overage left
    decided = decide(attempt(), PoolState(60, True, INC, terms))
    assert (decided.decision, decided.max_duration_s, decided.reason) == (
        "permit", 180, "included")
    assert decide(attempt(), PoolState(0, True, INC, terms)).max_duration_s == 120
    assert decide(attempt(), PoolState(0, True, INC, SpendTerms(RATE))).max_duration_s is None
    tight = SpendTerms(RATE, 1_000_000, 999_999)
    assert decide(attempt(), PoolState(0, True, INC, tight)).reason == "spend_limit"
    # PAYG off below the limit: the pool decides
    assert decide(attempt(), PoolState(90, False, INC, terms)).max_duration_s == 60


@pytest.mark.parametrize("limit", [None, 0, 5_000_000])
def test_limits_never_touch_free_calls(limit: int | None) -> None:
    terms = SpendTerms(RATE, limit, 10**12)
    assert decide(attempt("inbound"), PoolState(0, False, INC, terms)).decision == "permit"


# ------------------------------------------------------------------ the model ---

def test_the_model_counts_charges_and_reserved_amounts_per_user_and_period() -> None:
    now = ms("2026-01-15T12:00:00Z")
    model = ReferenceRater()
    model.upsert(make_subscription(payg=True, domestic_minutes=1))  # a 60 s pool
    assert model.set_spend_limit("sub-1", "u1", 100_000)
    assert not model.set_spend_limit("nobody", "u1", 1)
    policy = SessionPolicy()
    # 60 s in the pool, 180 s beyond it: 0.075000 at worst, within 0.10
    out = model.sessions.initial(SessionInitial("s1", "sub-1", "u1", "outbound", "domestic",
                                                False, 240, 0), policy, now)
    assert out.answer is not None and out.answer.granted_s == 240
    key = ("sub-1", "2026-01-01", "u1")
    assert model.user_reserved == {key: 75_000}
    # 0.025000 left: the next call of u1 gets 60 s, final; another user is not capped
    capped = model.sessions.initial(SessionInitial("s2", "sub-1", "u1", "outbound",
                                                   "domestic", False, 240, 0), policy, now)
    assert capped.answer is not None
    assert (capped.answer.granted_s, capped.answer.reason) == (60, "spend_limit")
    other = model.sessions.initial(SessionInitial("s3", "sub-1", "u2", "outbound",
                                                  "domestic", False, 240, 0), policy, now)
    assert other.answer is not None and other.answer.granted_s == 240
    # the CDR of s1 (150 s: 60 included, 120 s overage = 0.050000) releases its amount
    cdr = make_cdr(call_id="s1", user_id="u1", started_at=now - 200_000, duration_s=150)
    model.rate(cdr, cdr_fingerprint(cdr), RatingClock(now), now)
    assert model.user_amounts == {key: 50_000}
    assert model.user_reserved[key] == 25_000  # s2's
    assert model.spend_terms("sub-1", "2026-01-01", "u1", "domestic").budget_micro == 25_000
    assert model.set_spend_limit("sub-1", "u1", None)
    assert model.spend_terms("sub-1", "2026-01-01", "u1", "domestic").budget_micro is None
