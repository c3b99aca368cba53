"""The reference model's credit-control sessions (SPEC §11), state in plain dicts.

`SessionBook` keeps the sessions of one `ReferenceRater` and applies the rules of
`rater.rating.sessions` in the order the Lua scripts do: the request checks first
(a refused or repeated request changes nothing), then the sweep of the subscription's
expired sessions, then the decision on the pool. Reservations live in the rater's
`ZoneCounters.reserved_s`, beside the usage they are weighed against, and their worst-case
amounts (SPEC §14) in the rater's `user_reserved`, beside what the user was charged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from rater.rating.periods import period_of
from rater.rating.results import SessionEffect, ZoneCounters
from rater.rating.sessions import (
    KEEP_CLOSED_MS,
    RESERVING,
    Expirations,
    Grant,
    Refusal,
    RequestKind,
    SessionAnswer,
    SessionOutcome,
    SessionPolicy,
    SessionState,
    StoredSession,
    answer_of,
    check_request,
    free_grant,
    grant,
    pool_available,
    terminate_grant,
    unknown_subscription,
)
from rater.rating.spend import SpendTerms
from rater.records.shapes import (
    SessionInitial,
    SessionTerminate,
    SessionUpdate,
    Subscription,
    Zone,
)


class Pools(Protocol):
    """What the book reads of the rater: the plans, the counters and the users' spend."""

    subscriptions: dict[str, Subscription]

    def zone(self, subscription_id: str, period: str, zone: Zone) -> ZoneCounters: ...

    def spend_terms(self, subscription_id: str, period: str, user_id: str, zone: Zone,
                    own_micro: int = 0) -> SpendTerms: ...

    def reserve_amount(self, subscription_id: str, period: str, user_id: str,
                       delta_micro: int) -> None: ...


@dataclass(slots=True)
class ModelSession:
    """One stored session: the fields of the Redis session hash (rater.store.keys)."""

    state: SessionState
    zone: Zone
    user_id: str
    validity_s: int
    answer: SessionAnswer
    answer_kind: RequestKind
    request_number: int | None
    answer_number: int | None
    period: str | None = None  # of the initial request, for reserving sessions
    authorised_s: int | None = None
    used_s: int = 0
    reserved_s: int = 0
    reserved_micro: int = 0  # its worst-case amount against its user's limit (SPEC §14)
    terminated: bool = False
    deadline_ms: int | None = None
    gone_ms: int | None = None

    def view(self) -> StoredSession:
        return StoredSession(self.state, self.used_s, self.request_number, self.answer_number,
                             self.answer_kind, self.terminated, self.deadline_ms, self.gone_ms)


@dataclass(slots=True)
class SubscriptionTotals:
    """A subscription's sessions as the gauges count them."""

    open: int = 0
    terminated: int = 0
    reserved_s: dict[Zone, int] = field(default_factory=dict)


class SessionBook:
    def __init__(self, pools: Pools, keep_ms: int = KEEP_CLOSED_MS) -> None:
        self.pools = pools
        self.keep_ms = keep_ms
        self.sessions: dict[tuple[str, str], ModelSession] = {}

    # ------------------------------------------------------------ requests ---

    def initial(self, request: SessionInitial, policy: SessionPolicy,
                now_ms: int) -> SessionOutcome:
        key = (request.subscription_id, request.session_id)
        stored = self.sessions.get(key)
        verdict = check_request("initial", request.session_id,
                                stored.view() if stored else None, request.request_number,
                                0, now_ms)
        if verdict == "replay" and stored is not None:
            return SessionOutcome(stored.answer, replayed=True)
        if isinstance(verdict, Refusal):
            return SessionOutcome(refusal=verdict)

        def remember(state: SessionState, answer: SessionAnswer, gone_ms: int) -> None:
            self.sessions[key] = ModelSession(
                state, request.zone, request.user_id, policy.validity_s, answer, "initial",
                request.request_number, request.request_number, gone_ms=gone_ms)

        if request.is_free:
            answer = answer_of("initial", free_grant(), policy.validity_s, now_ms)
            remember("free", answer, policy.open_deadline_ms(now_ms) + self.keep_ms)
            return SessionOutcome(answer)
        sub = self.pools.subscriptions.get(request.subscription_id)
        if sub is None:
            answer = answer_of("initial", unknown_subscription(), policy.validity_s, now_ms)
            remember("blocked", answer, now_ms + self.keep_ms)
            return SessionOutcome(answer)
        expired = self.sweep(request.subscription_id, now_ms)
        period = period_of(now_ms, sub.billing_anchor_day).name
        counters = self.pools.zone(request.subscription_id, period, request.zone)
        available = pool_available(sub.included_s(request.zone), counters.used_included_s,
                                   counters.reserved_s)
        spend = self.pools.spend_terms(request.subscription_id, period, request.user_id,
                                       request.zone)
        decided = grant(True, 0, request.requested_s, available, sub.payg_enabled,
                        sub.plan.billing_increment, spend)
        answer = answer_of("initial", decided, policy.validity_s, now_ms)
        if decided.decision == "block":
            remember("blocked", answer, now_ms + self.keep_ms)
            return SessionOutcome(answer, expired=expired)
        counters.reserved_s += decided.reserved_s
        self.pools.reserve_amount(request.subscription_id, period, request.user_id,
                                  decided.reserved_micro)
        self.sessions[key] = ModelSession(
            "open", request.zone, request.user_id, policy.validity_s, answer, "initial",
            request.request_number, request.request_number, period=period,
            authorised_s=decided.authorised_s, reserved_s=decided.reserved_s,
            reserved_micro=decided.reserved_micro,
            deadline_ms=policy.open_deadline_ms(now_ms))
        return SessionOutcome(answer, expired=expired)

    def update(self, subscription_id: str, session_id: str, request: SessionUpdate,
               policy: SessionPolicy, now_ms: int) -> SessionOutcome:
        return self._follow_up("update", subscription_id, session_id, request.used_s,
                               request.requested_s, request.request_number, policy, now_ms)

    def terminate(self, subscription_id: str, session_id: str, request: SessionTerminate,
                  policy: SessionPolicy, now_ms: int) -> SessionOutcome:
        return self._follow_up("terminate", subscription_id, session_id, request.used_s, 0,
                               request.request_number, policy, now_ms)

    def _follow_up(self, kind: RequestKind, subscription_id: str, session_id: str,
                   used_s: int, requested_s: int, number: int | None, policy: SessionPolicy,
                   now_ms: int) -> SessionOutcome:
        stored = self.sessions.get((subscription_id, session_id))
        verdict = check_request(kind, session_id, stored.view() if stored else None, number,
                                used_s, now_ms)
        if verdict == "replay" and stored is not None:
            return SessionOutcome(stored.answer, replayed=True)
        if isinstance(verdict, Refusal):
            return SessionOutcome(refusal=verdict)
        assert stored is not None  # check_request refuses an unknown session
        highest = number if number is not None else stored.request_number
        stored.request_number, stored.answer_number, stored.answer_kind = highest, number, kind

        if stored.state == "free":
            answer = answer_of(kind, free_grant(), policy.validity_s, now_ms)
            stored.answer, stored.used_s = answer, used_s
            if kind == "terminate":
                stored.state, stored.terminated = "ended", True
                stored.gone_ms = now_ms + self.keep_ms
            else:
                stored.gone_ms = policy.open_deadline_ms(now_ms) + self.keep_ms
            return SessionOutcome(answer)
        if stored.state == "closed":  # a terminate after its CDR: only recorded
            stored.answer = answer_of(kind, Grant("permit", used_s, 0, True, "terminated"),
                                      policy.validity_s, now_ms)
            stored.terminated = True
            return SessionOutcome(stored.answer)

        # open: every other state was refused
        sub = self.pools.subscriptions[subscription_id]
        expired = self.sweep(subscription_id, now_ms)
        assert stored.period is not None
        counters = self.pools.zone(subscription_id, stored.period, stored.zone)
        available = pool_available(sub.included_s(stored.zone), counters.used_included_s,
                                   counters.reserved_s, stored.reserved_s)
        spend = self.pools.spend_terms(subscription_id, stored.period, stored.user_id,
                                       stored.zone, stored.reserved_micro)
        increment = sub.plan.billing_increment
        if kind == "terminate":
            decided = terminate_grant(used_s, available, sub.payg_enabled, increment, spend)
            stored.state, stored.terminated = "terminated", True
            stored.deadline_ms = policy.terminated_deadline_ms(now_ms)
        else:
            decided = grant(False, used_s, requested_s, available, sub.payg_enabled,
                            increment, spend)
            stored.authorised_s = decided.authorised_s
            stored.validity_s = policy.validity_s
            stored.deadline_ms = policy.open_deadline_ms(now_ms)
        counters.reserved_s += decided.reserved_s - stored.reserved_s
        self.pools.reserve_amount(subscription_id, stored.period, stored.user_id,
                                  decided.reserved_micro - stored.reserved_micro)
        stored.reserved_s, stored.used_s = decided.reserved_s, used_s
        stored.reserved_micro = decided.reserved_micro
        stored.answer = answer_of(kind, decided, policy.validity_s, now_ms)
        return SessionOutcome(stored.answer, expired=expired)

    # -------------------------------------------------- expiry and closing ---

    def sweep(self, subscription_id: str, now_ms: int) -> Expirations:
        """Release every reserving session of the subscription whose deadline has come."""
        validity = cdr_wait = 0
        for (sub_id, _), session in self.sessions.items():
            if (sub_id == subscription_id and session.state in RESERVING
                    and session.deadline_ms is not None and session.deadline_ms <= now_ms):
                if session.state == "open":
                    validity += 1
                else:
                    cdr_wait += 1
                self._release(subscription_id, session, "expired", now_ms)
        return Expirations(validity, cdr_wait)

    def close_by_cdr(self, subscription_id: str, call_id: str, now_ms: int) -> SessionEffect:
        """A new CDR of the call: its session's reservation goes, in the rating step."""
        session = self.sessions.get((subscription_id, call_id))
        if session is None or session.state not in RESERVING:
            return ""
        assert session.deadline_ms is not None
        if session.deadline_ms <= now_ms:  # already expired, not yet swept
            effect: SessionEffect = "validity" if session.state == "open" else "cdr_wait"
            self._release(subscription_id, session, "expired", now_ms)
            return effect
        self._release(subscription_id, session, "closed", now_ms)
        return "closed"

    def _release(self, subscription_id: str, session: ModelSession, state: SessionState,
                 now_ms: int) -> None:
        assert session.period is not None
        self.pools.zone(subscription_id, session.period, session.zone).reserved_s -= (
            session.reserved_s)
        self.pools.reserve_amount(subscription_id, session.period, session.user_id,
                                  -session.reserved_micro)
        session.state, session.reserved_s, session.reserved_micro = state, 0, 0
        session.deadline_ms, session.gone_ms = None, now_ms + self.keep_ms

    # ------------------------------------------------------------- reading ---

    def of(self, subscription_id: str) -> Iterator[tuple[str, ModelSession]]:
        for (sub_id, session_id), session in self.sessions.items():
            if sub_id == subscription_id:
                yield session_id, session

    def totals(self, subscription_id: str) -> SubscriptionTotals:
        totals = SubscriptionTotals()
        for _, session in self.of(subscription_id):
            if session.state == "open":
                totals.open += 1
            elif session.state == "terminated":
                totals.terminated += 1
            if session.reserved_s:
                totals.reserved_s[session.zone] = (
                    totals.reserved_s.get(session.zone, 0) + session.reserved_s)
        return totals

    def deadlines(self, subscription_id: str) -> dict[str, int]:
        """The expiry queue `sx`: session id -> deadline of every reserving session."""
        return {sid: s.deadline_ms for sid, s in self.of(subscription_id)
                if s.state in RESERVING and s.deadline_ms is not None}
