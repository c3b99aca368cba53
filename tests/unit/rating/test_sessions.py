"""SPEC §11, the pure rules: grants, reservations, answers and the request checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rater.rating.increments import billable_seconds
from rater.rating.sessions import (
    Grant,
    Refusal,
    SessionAnswer,
    SessionPolicy,
    StoredSession,
    answer_of,
    check_request,
    free_grant,
    grant,
    held_seconds,
    pool_available,
    terminate_grant,
    unknown_subscription,
)
from rater.records import Increment

INC = Increment(60, 60)
NOW = 1_768_478_400_000
increments = st.sampled_from([Increment(60, 60), Increment(30, 6), Increment(1, 1),
                              Increment(60, 1), Increment(6, 6), Increment(1, 60)])


# ------------------------------------------------------------------ grants ---

def test_initial_with_payg_off_grants_what_fits_and_says_final_when_short() -> None:
    assert grant(True, 0, 300, 600, False, INC) == Grant("permit", 300, 300, False, "included")
    # 90 s available on 60/60: the longest call that bills within it is 60 s
    assert grant(True, 0, 300, 90, False, INC) == Grant("permit", 60, 60, True, "included")
    # exactly what was asked is not final
    assert grant(True, 0, 61, 120, False, INC) == Grant("permit", 61, 120, False, "included")


@pytest.mark.parametrize("available", [0, 59, -300])
def test_initial_with_nothing_that_fits_is_blocked(available: int) -> None:
    assert grant(True, 0, 300, available, False, INC) == Grant("block", 0, 0, True, "exhausted")


def test_update_extends_the_whole_call_and_counts_its_own_reservation() -> None:
    # used 250 of an authorised 300 (300 reserved, counted in available); asks 300 more
    assert grant(False, 250, 300, 590, False, INC) == Grant("permit", 540, 540, True,
                                                             "included")
    assert grant(False, 250, 300, 900, False, INC) == Grant("permit", 550, 600, False,
                                                             "included")


def test_update_with_nothing_more_permits_the_used_seconds_as_final() -> None:
    # 300 used, nothing beyond 300 fits: the call must end now
    assert grant(False, 300, 300, 300, False, INC) == Grant("permit", 300, 300, True,
                                                             "exhausted")
    # a switch that overshot its grant: 400 used, only 300 available to it -> 300 held
    assert grant(False, 400, 300, 300, False, INC) == Grant("permit", 400, 300, True,
                                                             "exhausted")
    # the pool shrank below the session's own share (fewer licences): it holds nothing
    assert grant(False, 100, 300, -60, False, INC) == Grant("permit", 100, 0, True,
                                                             "exhausted")


def test_payg_on_grants_all_that_is_asked_and_says_where_it_is_paid_from() -> None:
    assert grant(True, 0, 300, 600, True, INC) == Grant("permit", 300, 300, False, "included")
    assert grant(True, 0, 300, 299, True, INC) == Grant("permit", 300, 300, False, "payg")
    assert grant(False, 61, 300, -10, True, INC) == Grant("permit", 361, 420, False, "payg")


def test_terminate_holds_the_billable_used_seconds_capped_without_payg() -> None:
    assert terminate_grant(61, 600, False, INC) == Grant("permit", 61, 120, True, "terminated")
    assert terminate_grant(61, 60, False, INC) == Grant("permit", 61, 60, True, "terminated")
    assert terminate_grant(61, 60, True, INC) == Grant("permit", 61, 120, True, "terminated")
    assert terminate_grant(0, 600, False, INC).reserved_s == 0
    assert held_seconds(61, -5, False, INC) == 0


def test_free_and_unknown_subscription() -> None:
    assert free_grant() == Grant("permit", None, 0, False, "free")
    assert unknown_subscription() == Grant("block", 0, 0, True, "unknown_subscription")


@given(inc=increments, used=st.integers(0, 2000), requested=st.integers(1, 2000),
       available=st.integers(-600, 4000))
def test_payg_off_grant_is_the_largest_that_fits_and_never_overdraws(
    inc: Increment, used: int, requested: int, available: int
) -> None:
    """§11.3: t is the largest t <= used + requested with billable(t) <= available; what a
    session reserves never exceeds what is available to it when that is not negative."""
    for initial in (True, False):
        if initial and used:
            continue
        decided = grant(initial, used, requested, available, False, inc)
        assert decided.reserved_s <= max(0, available)
        fits = [t for t in range(0, used + requested + 1)
                if billable_seconds(t, inc) <= available]
        best = max(fits, default=0)
        if best > used:
            assert (decided.decision, decided.authorised_s) == ("permit", best)
            assert decided.reserved_s == billable_seconds(best, inc)
            assert decided.final == (best < used + requested)
        elif initial:
            assert decided == Grant("block", 0, 0, True, "exhausted")
        else:
            assert (decided.decision, decided.authorised_s, decided.final) == (
                "permit", used, True)


def test_available_counts_the_sessions_own_reservation() -> None:
    assert pool_available(600, 100, 300) == 200
    assert pool_available(600, 100, 300, own_reserved_s=120) == 320
    assert pool_available(60, 120, 0) == -60


# ----------------------------------------------------------------- answers ---

def test_answers_carry_validity_only_when_more_may_follow() -> None:
    permit = answer_of("initial", Grant("permit", 300, 300, False, "included"), 600, NOW)
    assert permit == SessionAnswer("permit", 300, False, 600, "included", NOW + 600_000)
    block = answer_of("initial", Grant("block", 0, 0, True, "exhausted"), 600, NOW)
    assert (block.validity_s, block.expires_at_ms) == (0, NOW)
    ended = answer_of("terminate", terminate_grant(61, 600, False, INC), 600, NOW)
    assert ended == SessionAnswer("permit", 61, True, 0, "terminated", NOW)
    free_end = answer_of("terminate", free_grant(), 600, NOW)
    assert (free_end.granted_s, free_end.final, free_end.validity_s) == (None, True, 0)


def test_policy_deadlines() -> None:
    policy = SessionPolicy(validity_s=600, grace_s=30, cdr_wait_s=3600)
    assert policy.open_deadline_ms(NOW) == NOW + 630_000
    assert policy.terminated_deadline_ms(NOW) == NOW + 3_600_000


# ---------------------------------------------------------- request checks ---

def stored(state: str = "open", used: int = 100, number: int | None = 3,
           answer_number: int | None = 3, kind: str = "update", terminated: bool = False,
           deadline: int | None = NOW + 1000, gone: int | None = None) -> StoredSession:
    return StoredSession(state, used, number, answer_number, kind, terminated,  # type: ignore[arg-type]
                         deadline, gone)


def code(verdict: object) -> str:
    return verdict.code if isinstance(verdict, Refusal) else str(verdict)


def test_initial_for_a_new_id_proceeds_and_repeats_only_with_its_number() -> None:
    assert check_request("initial", "c1", None, None, 0, NOW) == "proceed"
    first = stored(kind="initial", number=0, answer_number=0)
    assert check_request("initial", "c1", first, 0, 0, NOW) == "replay"
    assert code(check_request("initial", "c1", first, 1, 0, NOW)) == "session_exists"
    assert code(check_request("initial", "c1", first, None, 0, NOW)) == "session_exists"
    unnumbered = stored(kind="initial", number=None, answer_number=None)
    assert check_request("initial", "c1", unnumbered, None, 0, NOW) == "replay"
    # once updated, the stored answer is the update's: the initial is not repeated
    assert code(check_request("initial", "c1", stored(), 3, 0, NOW)) == "session_exists"
    # a forgotten session's id may be used again
    gone = stored(state="closed", gone=NOW)
    assert check_request("initial", "c1", gone, 0, 0, NOW) == "proceed"


def test_update_and_terminate_of_unknown_or_expired_sessions_are_404() -> None:
    for kind in ("update", "terminate"):
        assert code(check_request(kind, "c1", None, 4, 100, NOW)) == "unknown_session"
        lapsed = stored(deadline=NOW)  # past its deadline, swept or not
        assert code(check_request(kind, "c1", lapsed, 4, 100, NOW)) == "unknown_session"
        swept = stored(state="expired", deadline=None, gone=NOW + 1)
        assert code(check_request(kind, "c1", swept, 3, 100, NOW)) == "unknown_session"
        forgotten = stored(state="closed", deadline=None, gone=NOW - 1)
        assert code(check_request(kind, "c1", forgotten, 4, 100, NOW)) == "unknown_session"
    assert check_request("update", "c1", None, 4, 100, NOW).status == 404  # type: ignore[union-attr]


def test_request_numbers_repeat_or_must_increase() -> None:
    session = stored(number=3, answer_number=3, kind="update")
    assert check_request("update", "c1", session, 3, 100, NOW) == "replay"
    assert code(check_request("terminate", "c1", session, 3, 100, NOW)) == "out_of_order"
    lower = check_request("update", "c1", session, 2, 100, NOW)
    assert isinstance(lower, Refusal) and lower.status == 409 and "not above 3" in lower.detail
    assert check_request("update", "c1", session, 4, 100, NOW) == "proceed"
    assert check_request("update", "c1", session, None, 100, NOW) == "proceed"


def test_what_a_session_can_no_longer_take_is_409() -> None:
    terminated = stored(state="terminated", terminated=True, kind="terminate")
    assert code(check_request("update", "c1", terminated, 4, 100, NOW)) == "terminated"
    assert code(check_request("terminate", "c1", terminated, 4, 100, NOW)) == "terminated"
    closed = stored(state="closed", deadline=None, gone=NOW + 1000)
    assert code(check_request("update", "c1", closed, 4, 100, NOW)) == "closed"
    # its CDR came first: the terminate is still taken (and changes no counter)
    assert check_request("terminate", "c1", closed, 4, 100, NOW) == "proceed"
    blocked = stored(state="blocked", used=0, kind="initial", deadline=None, gone=NOW + 1)
    assert code(check_request("update", "c1", blocked, 4, 0, NOW)) == "blocked"
    ended = stored(state="ended", terminated=True, deadline=None, gone=NOW + 1)
    assert code(check_request("update", "c1", ended, 4, 100, NOW)) == "terminated"


def test_used_seconds_never_decrease() -> None:
    verdict = check_request("update", "c1", stored(used=100), 4, 99, NOW)
    assert isinstance(verdict, Refusal) and verdict.status == 422
    assert verdict.code == "used_decreased" and "99" in verdict.detail
    assert check_request("terminate", "c1", stored(used=100), 4, 100, NOW) == "proceed"
    # the order of the checks: a lower number is refused before a lower used_s
    assert code(check_request("update", "c1", stored(used=100), 2, 99, NOW)) == "out_of_order"
