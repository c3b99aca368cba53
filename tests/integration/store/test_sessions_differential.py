"""Property test: credit-control sessions (SPEC §11) in Lua-in-Redis and in the reference
model give the same answers and the same state, step after step.

Random interleavings of initial, update and terminate requests (with request numbers:
new, repeated, lower, none), CDRs of those calls (within their grant, overshooting, with
no session at all), clock advances past validity and CDR wait, periodic sweeps, PAYG
flips and licence changes, over two subscriptions and an unknown one, near a period
boundary too, by two users, with per-user spend limits set, changed and removed (SPEC §14).
After every step: the answers (decision, grant, reason, expiry, refusal, replay,
expirations) and every counter (used, reserved, overage, amount, unbilled), every session
hash (its reserved amount too), the expiry queue, the subscription's session totals, each
user's overage amount and reserved amount, and the limits are the model's; and two
invariants hold. §11.3: with PAYG off, no session request, sweep or CDR within its grant
ever makes `used_included + reserved` exceed `included` (or exceed it further, once a
licence reduction or PAYG reservations already did). §14: no session request or sweep ever
makes a user's `spent + reserved amounts` exceed the user's limit (or exceed it further,
once a limit change did), nor does a CDR within its grant that costs no more than its
reservation priced (docs/sessions.md: what else can push a user over).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rater.rating.clock import RatingClock
from rater.rating.increments import billable_seconds
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating, Rejection
from rater.rating.session_model import ModelSession
from rater.rating.sessions import SessionOutcome, SessionPolicy
from rater.records import (
    SessionInitial,
    SessionTerminate,
    SessionUpdate,
    Subscription,
    cdr_fingerprint,
)
from rater.store import RatingInput, RedisStore
from rater.store import keys as layout
from tests.builders import make_cdr, make_subscription, ms

BASES = [ms("2026-01-15T12:00:00Z"), ms("2026-01-31T23:40:00Z")]  # anchor 1: a boundary
LATE_GRACE_MS = 259_200_000

plans = st.fixed_dictionaries({
    "increment": st.sampled_from(["60/60", "30/6", "1/1", "6/6"]),
    "licenses": st.integers(1, 2),
    "minutes": st.sampled_from([1, 2, 5, 10]),
    "payg": st.booleans(),
})
number_modes = st.sampled_from(["next", "next", "next", "same", "lower", "none"])
subs_of_calls = st.sampled_from([0, 0, 1])  # one busy subscription, one quieter
# a call: an index into the calls set up so far (a new call id when none is)
calls = st.integers(0, 7)
users = st.sampled_from(["u1", "u1", "u2"])
initial = st.tuples(
    st.just("initial"), st.sampled_from([0, 0, 0, 1, 1, 2]),
    st.sampled_from(["new", "new", "new", 0, 1]),
    st.sampled_from([None, 1, 45, 61, 120, 300, 900]),
    st.sampled_from(["domestic", "domestic", "international"]),
    st.sampled_from(["outbound"] * 6 + ["inbound", "emergency"]), number_modes, users)
update = st.tuples(st.just("update"), calls,
                   st.sampled_from([0, 5, 30, 61, 200, -5, -5]), st.sampled_from([None, 30, 300]),
                   number_modes)
terminate = st.tuples(st.just("terminate"), calls,
                      st.sampled_from([0, 5, 30, 61, 200, -5, -5]), number_modes)
cdr = st.tuples(st.just("cdr"), calls,
                st.sampled_from(["used", "used", "granted", "over", "short", "zero"]),
                st.sampled_from(["domestic", "domestic", "international"]))
# a user's spend limit (micro-units; None removes it): at 0.025 a minute, 30,000 buys 72 s
# of overage; 0 blocks the user's outbound calls at once
limits = st.tuples(st.just("limit"), subs_of_calls, users,
                   st.sampled_from([None, 0, 1, 30_000, 30_000, 100_000, 1_000_000]))
steps = st.one_of(
    initial, initial, update, update, terminate, terminate, cdr, cdr,
    st.tuples(st.just("advance"), st.sampled_from([1_000, 30_000, 400_000, 700_000,
                                                   3_700_000])),
    st.tuples(st.just("sweep"), subs_of_calls),
    st.tuples(st.just("snapshot"), subs_of_calls),
    st.tuples(st.just("payg"), subs_of_calls, st.booleans()),
    st.tuples(st.just("licences"), subs_of_calls, st.integers(0, 3)),
    st.tuples(st.just("retry"),),
    limits, limits,
)


@dataclass
class Switch:
    """What the test's switch knows of each call: its numbers, its used seconds."""

    calls: list[tuple[int, str]] = field(default_factory=list)  # (subscription, id)
    users: dict[tuple[int, str], str] = field(default_factory=dict)  # the call's user
    numbers: dict[tuple[int, str], int] = field(default_factory=dict)
    used: dict[tuple[int, str], int] = field(default_factory=dict)
    last: tuple[Any, ...] | None = None

    def new_call(self, sub_i: int, which: str | int) -> tuple[int, str]:
        if which == "new" or not self.calls:
            call = (sub_i, f"c{len(self.calls)}")
            self.calls.append(call)
            return call
        return (sub_i, self.calls[int(which) % len(self.calls)][1])  # an id used before

    def call(self, index: int) -> tuple[int, str]:
        return self.calls[index % len(self.calls)] if self.calls else (0, "never-set-up")

    def ids(self, sub_i: int) -> set[str]:
        return {sid for i, sid in self.calls if i == sub_i}

    def number(self, key: tuple[int, str], mode: str) -> int | None:
        current = self.numbers.get(key)
        if mode == "none":
            return None
        if mode == "same" and current is not None:
            return current
        if mode == "lower" and current:
            return current - 1
        self.numbers[key] = (current if current is not None else -1) + 1
        return self.numbers[key]


def same_outcome(a: SessionOutcome, b: SessionOutcome) -> bool:
    if a.refusal:
        event(f"refused {a.refusal.code}")
    elif a.answer:
        event(f"{'replayed ' if a.replayed else ''}{a.answer.decision} {a.answer.reason}")
    if a.expired:
        event("expired by a request")
    refusal = (a.refusal.code, a.refusal.detail) if a.refusal else None
    other = (b.refusal.code, b.refusal.detail) if b.refusal else None
    return (a.answer, refusal, a.replayed, a.expired) == (b.answer, other, b.replayed,
                                                          b.expired)


def same_rating(a: CallRating | Rejection, b: CallRating | Rejection) -> bool:
    event(f"cdr {a.reason if isinstance(a, Rejection) else a.session or a.outcome}")
    if isinstance(a, Rejection) or isinstance(b, Rejection):
        return isinstance(a, Rejection) and isinstance(b, Rejection) and a.reason == b.reason
    return a.same_as(b) and (a.replayed, a.session) == (b.replayed, b.session)


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "1" if value else None
    return str(value)


def expected_hash(session: ModelSession) -> dict[str, str | None]:
    return {
        "st": layout.SESSION_STATE_LETTER[session.state],
        "z": layout.ZONE_LETTER[session.zone],
        "per": session.period,
        "u": session.user_id,
        "val": str(session.validity_s),
        "auth": _text(session.authorised_s),
        "used": str(session.used_s),
        "res": str(session.reserved_s),
        "ra": str(session.reserved_micro),
        "rn": _text(session.request_number),
        "arn": _text(session.answer_number),
        "k": layout.REQUEST_KIND_LETTER[session.answer_kind],
        "term": _text(session.terminated),
        "dl": _text(session.deadline_ms),
        "gone": _text(session.gone_ms),
    }


class Pair:
    """The model and the store, driven with the same steps."""

    def __init__(self, store: RedisStore, subs: list[Subscription], policy: SessionPolicy):
        self.store = store
        self.model = ReferenceRater()
        self.subs = subs
        self.policy = policy

    async def upsert(self, sub: Subscription) -> None:
        self.model.upsert(sub)
        await self.store.upsert_subscription(sub)

    def spend_excess(self) -> dict[tuple[str, str, str], int]:
        """Per user with a limit and period: how far spent + reserved exceeds the limit."""
        out = {}
        amounts = self.model.user_amounts
        reserved = self.model.user_reserved
        for sub_id, period, user in set(amounts) | set(reserved):
            limit = self.model.limits.get((sub_id, user))
            if limit is not None:
                total = (amounts.get((sub_id, period, user), 0)
                         + reserved.get((sub_id, period, user), 0))
                if total and total >= limit:
                    event("§14: a user's spent + reserved reached the limit")
                out[(sub_id, period, user)] = max(0, total - limit)
        return out

    def excess(self) -> dict[tuple[str, str, str], int]:
        """Per pool with PAYG off: how far used + reserved exceeds included (0 when not)."""
        out = {}
        for (sub_id, period, zone), counters in self.model.counters.items():
            sub = self.model.subscriptions.get(sub_id)
            if sub is None or sub.payg_enabled:
                continue
            over = counters.used_included_s + counters.reserved_s - sub.included_s(zone)
            out[(sub_id, period, zone)] = max(0, over)
        return out

    async def check_state(self, switch: Switch) -> None:
        client = self.store.client
        for sub_i, sub in enumerate(self.subs):
            sub_id = sub.subscription_id
            for sid in switch.ids(sub_i):
                raw = await self.store.sessions.raw(sub_id, sid)
                model = self.model.sessions.sessions.get((sub_id, sid))
                if model is None:
                    assert raw == {}, (sid, raw)
                    continue
                got = {name: raw.get(name) or None for name in expected_hash(model)}
                assert got == expected_hash(model), sid
                assert layout.session_answer(raw["ans"]) == model.answer, sid
            queue = dict(await client.zrange(self.store.keys.session_deadlines(sub_id), 0, -1,
                                             withscores=True))
            assert {k: int(v) for k, v in queue.items()} == self.model.sessions.deadlines(
                sub_id)
            plan = await client.hgetall(self.store.sub_key(sub_id))
            totals = self.model.sessions.totals(sub_id)
            assert int(plan.get(layout.SESSIONS_OPEN_FIELD, 0)) == totals.open
            assert int(plan.get(layout.SESSIONS_RESERVING_FIELD, 0)) == (
                totals.open + totals.terminated)
            for zone in ("domestic", "international"):
                field_name = layout.subscription_reserved_field(zone)  # type: ignore[arg-type]
                assert int(plan.get(field_name, 0)) == totals.reserved_s.get(zone, 0)  # type: ignore[call-overload]
        for (sub_id, period, zone), counters in self.model.counters.items():
            raw = await client.hgetall(self.store.keys.counters(sub_id, period))
            got = (int(raw.get(layout.used_field(zone), 0)),
                   int(raw.get(layout.overage_field(zone), 0)),
                   int(raw.get(layout.unbilled_field(zone), 0)),
                   int(raw.get(layout.amount_field(zone), 0)),
                   int(raw.get(layout.reserved_field(zone), 0)))
            assert got == (counters.used_included_s, counters.overage_s, counters.unbilled_s,
                           counters.overage_micro, counters.reserved_s), (period, zone)
        model = self.model
        for sub_id, period, user in set(model.user_amounts) | set(model.user_reserved):
            raw = await client.hgetall(self.store.keys.users(sub_id, period))
            key = (sub_id, period, user)
            assert (int(raw.get(layout.user_amount_field(user), 0)),
                    int(raw.get(layout.user_reserved_amount_field(user), 0))) == (
                model.user_amounts.get(key, 0), model.user_reserved.get(key, 0)), key
        for sub in self.subs:
            raw = await client.hgetall(self.store.keys.limits(sub.subscription_id))
            limits = {name[2:]: int(value) for name, value in raw.items()
                      if name.startswith("l:")}
            assert limits == {user: limit for (sub_id, user), limit in model.limits.items()
                              if sub_id == sub.subscription_id}


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan_list=st.lists(plans, min_size=2, max_size=2), base=st.sampled_from(BASES),
       validity=st.sampled_from([60, 600]), cdr_wait=st.sampled_from([120, 3600]),
       script=st.lists(steps, min_size=10, max_size=50))
async def test_sessions_in_lua_match_the_reference_model(
    store: RedisStore, plan_list: list[dict[str, Any]], base: int, validity: int,
    cdr_wait: int, script: list[tuple[Any, ...]]
) -> None:
    await play(store, plan_list, base, SessionPolicy(validity, 30, cdr_wait), script)


# Spend limits (SPEC §14) where they bite: PAYG on, small pools, both users limited from
# the start, calls set up, extended, ended and rated in any order.
spend_plans = st.fixed_dictionaries({
    "increment": st.sampled_from(["60/60", "30/6", "1/1"]),
    "licenses": st.just(1),
    "minutes": st.sampled_from([0, 1, 2]),
    "payg": st.sampled_from([True, True, True, False]),
})
spend_initial = st.tuples(
    st.just("initial"), st.sampled_from([0, 0, 1]), st.just("new"),
    st.sampled_from([30, 61, 120, 300]), st.just("domestic"),
    st.sampled_from(["outbound"] * 8 + ["emergency"]), st.just("next"), users)
spend_steps = st.one_of(
    spend_initial, spend_initial, spend_initial,
    st.tuples(st.just("update"), calls, st.sampled_from([0, 30, 61, 200]),
              st.sampled_from([None, 60, 300]), st.just("next")),
    st.tuples(st.just("terminate"), calls, st.sampled_from([0, 30, 61, 200]), st.just("next")),
    st.tuples(st.just("cdr"), calls, st.sampled_from(["used", "granted", "short", "over"]),
              st.just("domestic")),
    st.tuples(st.just("cdr"), calls, st.sampled_from(["used", "granted"]), st.just("domestic")),
    st.tuples(st.just("advance"), st.sampled_from([1_000, 700_000])),
    st.tuples(st.just("snapshot"), subs_of_calls),
    st.tuples(st.just("payg"), subs_of_calls, st.booleans()),
    limits,
)
start_limits = st.tuples(
    st.tuples(st.just("limit"), st.just(0), st.just("u1"),
              st.sampled_from([30_000, 50_000, 100_000])),
    st.tuples(st.just("limit"), st.just(1), st.just("u1"), st.sampled_from([0, 60_000])),
    st.tuples(st.just("limit"), st.just(0), st.just("u2"), st.sampled_from([None, 25_000])))


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan_list=st.lists(spend_plans, min_size=2, max_size=2), start=start_limits,
       script=st.lists(spend_steps, min_size=10, max_size=40))
async def test_spend_limits_in_lua_match_the_reference_model(
    store: RedisStore, plan_list: list[dict[str, Any]], start: tuple[Any, ...],
    script: list[tuple[Any, ...]]
) -> None:
    await play(store, plan_list, BASES[0], SessionPolicy(600, 30, 3600), [*start, *script])


async def play(store: RedisStore, plan_list: list[dict[str, Any]], base: int,
               policy: SessionPolicy, script: list[tuple[Any, ...]]) -> None:
    """Both engines through the script, compared and checked after every step."""
    tag = uuid.uuid4().hex[:8]
    subs = [make_subscription(subscription_id=f"{tag}-s{i}", anchor_day=1,
                              increment=plan["increment"], licenses=plan["licenses"],
                              domestic_minutes=plan["minutes"], international_minutes=1,
                              payg=plan["payg"])
            for i, plan in enumerate(plan_list)]
    names = [s.subscription_id for s in subs] + [f"{tag}-nobody"]
    pair = Pair(store, subs, policy)
    for sub in subs:
        await pair.upsert(sub)
    switch = Switch()
    now = base
    for step in script:
        if step[0] == "retry":
            if switch.last is None:
                continue
            step = switch.last
        before, spend_before = pair.excess(), pair.spend_excess()
        guarded, spend_guarded = await run_step(pair, switch, names, step, now)
        if step[0] == "advance":
            now += step[1]
        after, spend_after = pair.excess(), pair.spend_excess()
        if guarded:
            for pool, over in after.items():
                assert over <= before.get(pool, 0), (step, pool, before.get(pool), over)
        if spend_guarded:
            for user, over in spend_after.items():
                assert over <= spend_before.get(user, 0), (step, user, spend_before.get(user),
                                                          over)
        await pair.check_state(switch)


async def run_step(pair: Pair, switch: Switch, names: list[str], step: tuple[Any, ...],
                   now: int) -> tuple[bool, bool]:
    """Apply one step to both; whether the §11.3 invariant, and the §14 one, must hold
    across it."""
    model, store, policy = pair.model, pair.store, pair.policy
    kind = step[0]
    if kind in ("initial", "update", "terminate"):
        switch.last = step
    if kind == "initial":
        _, sub_i, which, requested, zone, how, mode, user = step
        call = switch.new_call(sub_i, which)
        request = SessionInitial(
            session_id=call[1], subscription_id=names[sub_i], user_id=user,
            direction="inbound" if how == "inbound" else "outbound", zone=zone,
            emergency=how == "emergency", requested_s=requested or 300,
            request_number=switch.number(call, mode))
        want = model.sessions.initial(request, policy, now)
        got = await store.sessions.initial(request, policy, now, LATE_GRACE_MS)
        assert same_outcome(want, got), (step, want, got)
        if want.answer is not None and not want.replayed:
            switch.used[call] = 0
            switch.users[call] = user
        return True, True
    if kind in ("update", "terminate"):
        index, delta, *rest = step[1:]
        call = switch.call(index)
        number = switch.number(call, rest[-1])
        used = max(0, switch.used.get(call, 0) + delta)
        sub_id, sid = names[call[0]], call[1]
        if kind == "update":
            update = SessionUpdate(used, rest[0] or 300, number, sub_id)
            want = model.sessions.update(sub_id, sid, update, policy, now)
            _, got = await store.sessions.update(sid, update, policy, now)
        else:
            end = SessionTerminate(used, number, sub_id)
            want = model.sessions.terminate(sub_id, sid, end, policy, now)
            _, got = await store.sessions.terminate(sid, end, policy, now)
        assert same_outcome(want, got), (step, want, got)
        if want.answer is not None and not want.replayed:
            switch.used[call] = used
        return True, True
    if kind == "cdr":
        _, index, how, zone = step
        call = switch.call(index)
        sub_id, sid = names[call[0]], call[1]
        session = model.sessions.sessions.get((sub_id, sid))
        granted = session.authorised_s if session and session.authorised_s else 0
        used = switch.used.get(call, 0)
        duration = {"used": used, "granted": granted, "over": granted + 61,
                    "short": max(0, used // 2), "zero": 0}[how]
        cdr = make_cdr(call_id=sid, subscription_id=sub_id,
                       user_id=switch.users.get(call, "u1"), zone=zone,
                       started_at=now - duration * 1000 - 500, duration_s=duration)
        held = session.reserved_s if session and session.state in ("open", "terminated") else -1
        held_micro = session.reserved_micro if session else 0
        zone_of_session = session.zone if session else None
        clock = RatingClock(now, LATE_GRACE_MS)
        [want] = [model.rate(cdr, cdr_fingerprint(cdr), clock, now)]
        [got] = await store.rate_batch([RatingInput(cdr, cdr_fingerprint(cdr))], clock, now)
        assert same_rating(want, got), (step, want, got)
        sub = model.subscriptions.get(sub_id)
        # within its grant: the call's billable seconds are what its session held, same pool
        within = (isinstance(want, CallRating) and want.session == "closed" and sub is not None
                  and zone == zone_of_session
                  and billable_seconds(duration, sub.plan.billing_increment) <= held
                  and want.period == session.period)  # type: ignore[union-attr]
        # ... and its charge no more than its reservation priced: no other call took the
        # included seconds its reservation counted on
        priced = within and want.amount_micro <= held_micro  # type: ignore[union-attr]
        if within and not priced:
            event("§14: a CDR within its grant cost more than its reservation priced")
        return within, priced
    if kind == "advance":
        return True, True
    if kind == "sweep":
        sub_id = names[step[1]]
        want_expired = model.sessions.sweep(sub_id, now)
        done = await store.sessions.sweep(sub_id, now)
        deadlines = model.sessions.deadlines(sub_id)
        assert done.expired == want_expired
        assert done.next_deadline_ms == (min(deadlines.values()) if deadlines else None)
        return True, True
    if kind == "snapshot":
        sub_id = names[step[1]]
        expired = model.sessions.sweep(sub_id, now)
        snapshot = await store.snapshot(sub_id, now, now)
        assert snapshot is not None and snapshot.expired == expired
        for zone, counters in snapshot.zones.items():
            assert counters == model.zone(sub_id, snapshot.period, zone)
        return True, True
    if kind == "payg":
        _, sub_i, enabled = step
        model.set_payg(names[sub_i], enabled)
        await store.set_payg(names[sub_i], enabled)
        return False, True
    if kind == "licences":
        _, sub_i, licences = step
        current = model.subscriptions[names[sub_i]]
        await pair.upsert(replace(current, licenses=licences))
        return False, True
    if kind == "limit":
        _, sub_i, user, limit = step
        assert model.set_spend_limit(names[sub_i], user, limit)
        changed = await store.set_spend_limit(names[sub_i], user, limit)
        assert changed is not None and changed.applied
        return True, False
    raise AssertionError(f"unknown step {step}")
