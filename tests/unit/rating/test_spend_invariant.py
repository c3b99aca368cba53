"""SPEC §14's invariant on the reference model: for a user with a limit, at every instant,
`spent + Σ reserved amounts <= limit`, whatever the order in which that user's sessions
are set up, updated, terminated and their CDRs rated, as long as every call ends within
its grant and no other traffic uses the pool (docs/sessions.md says what else can push a
user over). With an increment whose billable seconds are whole minutes every charge is
exact and the bound holds to the micro-unit; otherwise each charge is rounded on its own,
and a call charged with more overage than its reservation priced (another call of the
user took included seconds first) can add at most one micro-unit of rounding."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rater.rating.clock import RatingClock
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating
from rater.rating.sessions import SessionPolicy
from rater.records import SessionInitial, SessionTerminate, SessionUpdate, cdr_fingerprint
from tests.builders import make_cdr, make_subscription, ms

NOW = ms("2026-01-15T12:00:00Z")
POLICY = SessionPolicy(600, 30, 3600)
USER = "u1"

steps = st.lists(st.one_of(
    st.tuples(st.just("initial"), st.sampled_from([30, 60, 61, 120, 300, 900])),
    st.tuples(st.just("update"), st.integers(0, 15), st.floats(0, 1),
              st.sampled_from([60, 300, 900])),
    st.tuples(st.just("terminate"), st.integers(0, 15), st.floats(0, 1)),
    st.tuples(st.just("cdr"), st.integers(0, 15), st.floats(0, 1)),
), min_size=1, max_size=60)


def run(increment: str, minutes: int, limit: int, rate: str, script: list[Any]) -> int:
    """Plays the script; returns the largest excess over the limit seen (0: never over)
    and checks the counters' bookkeeping on the way."""
    model = ReferenceRater()
    sub = make_subscription(increment=increment, domestic_minutes=minutes, payg=True,
                            domestic_rate=rate)
    model.upsert(sub)
    model.set_spend_limit("sub-1", USER, limit)
    calls: list[str] = []
    state: dict[str, dict[str, Any]] = {}  # call -> granted, used, number, ended
    worst = 0
    period = "2026-01-01"
    for step in script:
        kind = step[0]
        if kind == "initial":
            call = f"c{len(calls)}"
            calls.append(call)
            out = model.sessions.initial(SessionInitial(call, "sub-1", USER, "outbound",
                                                        "domestic", False, step[1], 0),
                                         POLICY, NOW)
            assert out.answer is not None
            state[call] = {"granted": out.answer.granted_s if out.answer.decision == "permit"
                           else None, "used": 0, "number": 0, "done": False}
        elif calls:
            call = calls[step[1] % len(calls)]
            s = state[call]
            if s["granted"] is None or s["done"]:
                continue
            if kind == "cdr":
                duration = s["used"] if s.get("terminated") else (
                    s["used"] + round((s["granted"] - s["used"]) * step[2]))
                cdr = make_cdr(call_id=call, user_id=USER, started_at=NOW - 3_600_000,
                               duration_s=duration)
                rated = model.rate(cdr, cdr_fingerprint(cdr), RatingClock(NOW), NOW)
                assert isinstance(rated, CallRating) and rated.session == "closed"
                s["done"] = True
                continue
            if s.get("terminated"):
                continue
            used = s["used"] + round((s["granted"] - s["used"]) * step[2])
            s["number"] += 1
            if kind == "update":
                out = model.sessions.update("sub-1", call, SessionUpdate(
                    used, step[3], s["number"], "sub-1"), POLICY, NOW)
                assert out.answer is not None
                s["granted"], s["used"] = out.answer.granted_s, used
            else:
                model.sessions.terminate("sub-1", call, SessionTerminate(
                    used, s["number"], "sub-1"), POLICY, NOW)
                s["used"], s["terminated"] = used, True
        key = ("sub-1", period, USER)
        total = model.user_amounts.get(key, 0) + model.user_reserved.get(key, 0)
        held = sum(session.reserved_micro for _, session in model.sessions.of("sub-1"))
        assert model.user_reserved.get(key, 0) == held
        worst = max(worst, total - limit)
    return worst


@settings(max_examples=400, deadline=None)
@given(minutes=st.integers(0, 10), limit=st.integers(0, 400_000),
       rate=st.sampled_from(["0.025", "0.01", "0.333333"]), script=steps)
def test_whole_minute_charges_never_go_past_the_limit(minutes: int, limit: int, rate: str,
                                                       script: list[Any]) -> None:
    assert run("60/60", minutes, limit, rate, script) <= 0


@settings(max_examples=400, deadline=None)
@given(increment=st.sampled_from(["1/1", "30/6", "6/6"]), minutes=st.integers(0, 10),
       limit=st.integers(0, 400_000), rate=st.sampled_from(["0.025", "0.000031", "0.333333"]),
       script=steps)
def test_rounding_each_charge_adds_at_most_a_micro_unit_a_call(
        increment: str, minutes: int, limit: int, rate: str, script: list[Any]) -> None:
    calls = sum(1 for step in script if step[0] == "initial")
    assert run(increment, minutes, limit, rate, script) <= calls


def test_decimal_rates_stay_exact() -> None:
    assert Decimal("0.333333") * 60 == Decimal("19.999980")
