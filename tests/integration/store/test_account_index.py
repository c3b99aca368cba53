"""The billing-account index of subscriptions in the real Redis: written with each
applied upsert, never for a refused one, and rebuilt for subscriptions from before it."""

from __future__ import annotations

import pytest

from rater.rating.subscription_rules import ImmutableFieldError
from rater.store import RedisStore
from tests.builders import make_subscription

pytestmark = pytest.mark.integration


async def test_upserts_index_their_account_and_refused_ones_do_not(store: RedisStore) -> None:
    await store.upsert_subscriptions([
        make_subscription(subscription_id="s1", billing_account_id="ba-a", anchor_day=5),
        make_subscription(subscription_id="s2", billing_account_id="ba-a", anchor_day=20),
        make_subscription(subscription_id="s3", billing_account_id="ba-b"),
    ])
    assert await store.account_subscriptions("ba-a") == {"s1": 5, "s2": 20}
    assert await store.account_subscriptions("ba-b") == {"s3": 1}
    await store.upsert_subscription(make_subscription(subscription_id="s1",
                                                      billing_account_id="ba-a", anchor_day=9))
    assert await store.account_subscriptions("ba-a") == {"s1": 9, "s2": 20}
    with pytest.raises(ImmutableFieldError):  # may not move to another billing account
        await store.upsert_subscription(make_subscription(subscription_id="s3",
                                                          billing_account_id="ba-a"))
    assert await store.account_subscriptions("ba-a") == {"s1": 9, "s2": 20}
    assert await store.account_subscriptions("ba-none") == {}


async def test_reindex_writes_the_index_of_every_stored_subscription(store: RedisStore) -> None:
    await store.upsert_subscriptions([
        make_subscription(subscription_id=f"r{i}", billing_account_id=f"ba-{i % 2}",
                          anchor_day=i + 1) for i in range(5)])
    async for key in store.client.scan_iter(match=store.keys.every_account_index_key):
        await store.client.delete(key)
    assert await store.account_subscriptions("ba-0") == {}
    assert await store.index_every_subscription() == 5
    assert await store.account_subscriptions("ba-0") == {"r0": 1, "r2": 3, "r4": 5}
    assert await store.account_subscriptions("ba-1") == {"r1": 2, "r3": 4}
