"""The sweeper's registry (rater.store.sessions, lua/sweep_*.lua) and one sweep pass
(rater.service.sessions.SessionSweeper) against a real Redis."""

from __future__ import annotations

from rater.config import Settings
from rater.rating.sessions import SessionPolicy
from rater.records import SessionInitial, SessionTerminate
from rater.service.sessions import SessionSweeper
from rater.store import RedisStore
from tests.builders import make_subscription, ms

NOW = ms("2026-01-15T12:00:00Z")
POLICY = SessionPolicy(validity_s=60, grace_s=10, cdr_wait_s=120)
LATE_GRACE_MS = 259_200_000


def call(sid: str, sub: str = "sub-1") -> SessionInitial:
    return SessionInitial(sid, sub, "u1", "outbound", "domestic", False, 60, 0)


async def score(store: RedisStore, sub: str) -> float | None:
    found: float | None = await store.client.zscore(store.keys.session_registry, sub)
    return found


async def test_an_initial_request_registers_its_deadline_before_it_runs(store: RedisStore) -> None:
    await store.upsert_subscription(make_subscription())
    await store.sessions.initial(call("a"), POLICY, NOW, LATE_GRACE_MS)
    assert await score(store, "sub-1") == NOW + 70_000
    # a later session's later deadline leaves the earliest in place (ZADD LT)
    await store.sessions.initial(call("b"), POLICY, NOW + 5_000, LATE_GRACE_MS)
    assert await score(store, "sub-1") == NOW + 70_000
    # a terminate whose CDR wait ends before the open deadline registers the earlier one
    short = SessionPolicy(validity_s=60, grace_s=10, cdr_wait_s=30)
    await store.sessions.terminate("b", SessionTerminate(5, 1, None), short, NOW + 6_000)
    assert await score(store, "sub-1") == NOW + 36_000
    # free calls are never registered
    await store.sessions.initial(SessionInitial("f", "sub-2", "u", "inbound", "domestic",
                                                False, 60, None), POLICY, NOW, LATE_GRACE_MS)
    assert await score(store, "sub-2") is None


async def test_claim_sweep_settle(store: RedisStore) -> None:
    sessions = store.sessions
    await store.upsert_subscription(make_subscription())
    await sessions.initial(call("a"), POLICY, NOW, LATE_GRACE_MS)
    await sessions.initial(call("b"), POLICY, NOW + 20_000, LATE_GRACE_MS)
    assert await sessions.due(NOW + 69_999, 10) == []
    [(sub, seen)] = await sessions.due(NOW + 70_000, 10)
    assert (sub, seen) == ("sub-1", NOW + 70_000)
    claim = NOW + 10**7
    assert await sessions.claim(sub, seen, claim)
    assert not await sessions.claim(sub, seen, claim)  # another worker: already claimed
    swept = await sessions.sweep(sub, NOW + 70_000)
    assert (swept.expired.validity, swept.next_deadline_ms) == (1, NOW + 90_000)
    assert await sessions.settle(sub, claim, swept.next_deadline_ms)
    assert await score(store, sub) == NOW + 90_000
    # the last session goes: removed, unless a request registered one meanwhile
    claim = NOW + 2 * 10**7
    assert await sessions.claim(sub, NOW + 90_000, claim)
    swept = await sessions.sweep(sub, NOW + 90_000)
    assert swept.next_deadline_ms is None
    await store.client.zadd(store.keys.session_registry, {sub: NOW + 200_000}, lt=True)
    assert await sessions.settle(sub, claim, None)  # kept: a registration lowered the claim
    assert await score(store, sub) == NOW + 200_000
    assert await sessions.claim(sub, NOW + 200_000, claim)
    assert not await sessions.settle(sub, claim, None)
    assert await score(store, sub) is None


async def test_a_sweep_pass_releases_what_nobody_asks_about_and_adds_up_the_totals(
    store: RedisStore
) -> None:
    settings = Settings.from_env({"RATER_SESSION_VALIDITY_S": "60", "RATER_SESSION_GRACE_S": "10",
                                  "RATER_SESSION_CDR_WAIT_S": "120"})
    clock = [NOW]
    sweeper = SessionSweeper(store, settings, clock=lambda: clock[0])
    for sub in ("sub-1", "sub-2"):
        await store.upsert_subscription(make_subscription(subscription_id=sub))
    await store.sessions.initial(call("a", "sub-1"), POLICY, NOW, LATE_GRACE_MS)
    await store.sessions.initial(call("b", "sub-2"), POLICY, NOW, LATE_GRACE_MS)
    await store.sessions.terminate("b", SessionTerminate(61, 1, "sub-2"), POLICY, NOW + 1_000)
    first = await sweeper.run_once()
    assert (first.visited, first.totals.open, first.totals.terminated) == (0, 1, 1)
    assert first.totals.reserved_s == {"domestic": 180, "international": 0}
    clock[0] = NOW + 70_000  # sub-1's session is due; sub-2's waits for its CDR
    second = await sweeper.run_once()
    # sub-2 is visited too: it was registered with its open deadline, and its terminate
    # moved the deadline later; the visit finds nothing due and registers the new one
    assert (second.visited, second.expired.validity, second.expired.cdr_wait) == (2, 1, 0)
    assert await score(store, "sub-2") == NOW + 121_000
    assert (second.totals.open, second.totals.terminated) == (0, 1)
    snapshot = await store.snapshot("sub-1", NOW, NOW + 70_000)
    assert snapshot is not None and snapshot.zones["domestic"].reserved_s == 0
    clock[0] = NOW + 121_000
    third = await sweeper.run_once()
    assert (third.visited, third.expired.cdr_wait, third.totals.subscriptions) == (1, 1, 0)
    assert third.totals.reserved_s == {"domestic": 0, "international": 0}


async def test_an_initial_request_loads_its_script_into_a_redis_that_lost_it(
    store: RedisStore
) -> None:
    """The initial request sends EVALSHA in its pipeline; a flushed (or restarted) Redis
    gets the script and the request goes through once, index and registry included."""
    await store.upsert_subscription(make_subscription())
    await store.client.script_flush()
    outcome = await store.sessions.initial(call("a"), POLICY, NOW, LATE_GRACE_MS)
    assert outcome.answer is not None and outcome.answer.decision == "permit"
    assert await store.client.get(store.sessions.index_key("a")) == "sub-1"
    assert await score(store, "sub-1") == NOW + 70_000
    assert (await store.client.script_exists(store.sessions._initial.sha)) == [True]
