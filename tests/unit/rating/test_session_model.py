"""The reference model's sessions (rater.rating.session_model): a call's life from set-up
to its CDR, expiry, and what the pool holds at every step."""

from __future__ import annotations

from rater.rating.clock import RatingClock
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating
from rater.rating.sessions import SessionOutcome, SessionPolicy
from rater.records import SessionInitial, SessionTerminate, SessionUpdate, cdr_fingerprint
from tests.builders import make_cdr, make_subscription, ms

NOW = ms("2026-01-15T12:00:00Z")
POLICY = SessionPolicy(validity_s=600, grace_s=30, cdr_wait_s=3600)
PERIOD = "2026-01-01"


def initial(model: ReferenceRater, sid: str, requested: int = 300, number: int | None = 0,
            now: int = NOW, **kw: object) -> SessionOutcome:
    fields = {"subscription_id": "sub-1", "user_id": "user-1", "direction": "outbound",
              "zone": "domestic", "emergency": False, **kw}
    request = SessionInitial(session_id=sid, requested_s=requested, request_number=number,
                             **fields)  # type: ignore[arg-type]
    return model.sessions.initial(request, POLICY, now)


def rate(model: ReferenceRater, call_id: str, duration: int, now: int) -> CallRating:
    cdr = make_cdr(call_id=call_id, duration_s=duration, started_at=NOW)
    result = model.rate(cdr, cdr_fingerprint(cdr), RatingClock(now), now)
    assert isinstance(result, CallRating)
    return result


def reserved(model: ReferenceRater) -> int:
    return model.zone("sub-1", PERIOD, "domestic").reserved_s


def test_a_call_from_set_up_to_its_cdr() -> None:
    model = ReferenceRater()
    model.upsert(make_subscription(domestic_minutes=10))  # 600 s, 60/60, PAYG off
    first = initial(model, "c1")
    assert first.answer is not None and first.answer.granted_s == 300
    assert reserved(model) == 300
    extended = model.sessions.update("sub-1", "c1", SessionUpdate(280, 300, 1, None), POLICY,
                                     NOW + 280_000)
    assert extended.answer is not None and extended.answer.granted_s == 580
    assert reserved(model) == 600
    ended = model.sessions.terminate("sub-1", "c1", SessionTerminate(301, 2, None), POLICY,
                                     NOW + 301_000)
    assert ended.answer is not None and ended.answer.reason == "terminated"
    assert reserved(model) == 360  # billable(301) until the CDR comes
    rating = rate(model, "c1", 301, NOW + 302_000)
    assert (rating.included_s, rating.unbilled_s, rating.session) == (360, 0, "closed")
    assert reserved(model) == 0
    # a replay of that CDR touches no session
    again = rate(model, "c1", 301, NOW + 303_000)
    assert again.replayed and again.session == ""


def test_concurrent_set_ups_never_overrun_the_pool() -> None:
    model = ReferenceRater()
    model.upsert(make_subscription(domestic_minutes=10))
    answers = [initial(model, f"c{i}", requested=120).answer for i in range(8)]
    granted = [a.granted_s for a in answers if a is not None and a.decision == "permit"]
    assert granted == [120] * 5
    assert [a.reason for a in answers if a and a.decision == "block"] == ["exhausted"] * 3
    assert reserved(model) == 600


def test_a_cdr_before_the_terminate_closes_the_session_and_the_terminate_changes_nothing() -> None:
    model = ReferenceRater()
    model.upsert(make_subscription(domestic_minutes=10))
    initial(model, "c1")
    assert rate(model, "c1", 60, NOW + 61_000).session == "closed"
    late = model.sessions.terminate("sub-1", "c1", SessionTerminate(60, 1, None), POLICY,
                                    NOW + 62_000)
    assert late.answer is not None and (late.answer.granted_s, late.answer.final) == (60, True)
    assert reserved(model) == 0
    again = model.sessions.terminate("sub-1", "c1", SessionTerminate(60, 2, None), POLICY,
                                     NOW + 63_000)
    assert again.refusal is not None and again.refusal.code == "terminated"


def test_a_switch_that_never_reports_again_loses_its_reservation() -> None:
    model = ReferenceRater()
    model.upsert(make_subscription(domestic_minutes=10))
    initial(model, "dead")
    assert model.sessions.sweep("sub-1", NOW + 629_999).validity == 0
    assert reserved(model) == 300
    assert model.sessions.sweep("sub-1", NOW + 630_000).validity == 1
    assert reserved(model) == 0
    late = model.sessions.update("sub-1", "dead", SessionUpdate(700, 300, 1, None), POLICY,
                                 NOW + 700_000)
    assert late.refusal is not None and late.refusal.status == 404
    # its CDR, when it comes, rates like a CDR without session
    assert rate(model, "dead", 60, NOW + 701_000).session == ""


def test_a_terminated_session_whose_cdr_never_comes_is_released_after_the_wait() -> None:
    model = ReferenceRater()
    model.upsert(make_subscription(domestic_minutes=10))
    initial(model, "c1")
    model.sessions.terminate("sub-1", "c1", SessionTerminate(100, 1, None), POLICY,
                             NOW + 100_000)
    assert reserved(model) == 120
    # an unswept expired session met by its CDR is released as expired, not closed
    assert rate(model, "c1", 100, NOW + 100_000 + 3_600_000).session == "cdr_wait"
    assert reserved(model) == 0


def test_free_sessions_reserve_nothing_whatever_the_subscription() -> None:
    model = ReferenceRater()
    for kw in ({"direction": "inbound"}, {"emergency": True, "subscription_id": "nobody"}):
        outcome = initial(model, f"f-{len(model.sessions.sessions)}", **kw)
        assert outcome.answer is not None
        assert (outcome.answer.decision, outcome.answer.granted_s, outcome.answer.reason) == (
            "permit", None, "free")
    unknown = initial(model, "x", subscription_id="nobody")
    assert unknown.answer is not None and unknown.answer.reason == "unknown_subscription"
    assert model.counters == {}
