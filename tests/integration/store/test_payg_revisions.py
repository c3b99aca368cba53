"""PAYG switches carry revisions, so a re-applied audit event never undoes a newer switch."""

from __future__ import annotations

from rater.store import PaygSwitch, RedisStore
from tests.builders import make_subscription, ms


async def test_switches_bump_the_revision(store: RedisStore) -> None:
    await store.upsert_subscription(make_subscription())
    assert await store.set_payg("sub-1", True) == PaygSwitch(False, 1, True)
    assert await store.set_payg("sub-1", False) == PaygSwitch(True, 2, True)
    assert await store.set_payg("nobody", True) is None


async def test_an_older_event_changes_nothing(store: RedisStore) -> None:
    await store.upsert_subscription(make_subscription())
    first = await store.set_payg("sub-1", True)  # API: on  (revision 1)
    second = await store.set_payg("sub-1", False)  # API: off (revision 2)
    assert first is not None and second is not None
    # the agent now meets both audit events, in order
    replay_first = await store.set_payg("sub-1", True, first.revision)
    replay_second = await store.set_payg("sub-1", False, second.revision)
    assert replay_first == PaygSwitch(False, 2, False)
    assert replay_second == PaygSwitch(False, 2, False)
    snapshot = await store.snapshot("sub-1", ms("2026-01-15T00:00:00Z"))
    assert snapshot is not None and snapshot.payg_enabled is False


async def test_an_external_event_without_revision_always_applies(store: RedisStore) -> None:
    await store.upsert_subscription(make_subscription())
    await store.set_payg("sub-1", True, 7)
    assert await store.set_payg("sub-1", False) == PaygSwitch(True, 8, True)
    # an upsert keeps the revision counter, so old audit events stay stale
    await store.upsert_subscription(make_subscription(payg=True))
    assert await store.set_payg("sub-1", False, 8) == PaygSwitch(True, 8, False)
