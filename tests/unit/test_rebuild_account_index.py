"""`rater rebuild` writes the billing accounts' subscription indexes with the rest."""

from __future__ import annotations

from rater.store.keys import KeySpace
from rater.store.rebuild import Report, SubscriptionState, rebuild_state
from tests.builders import make_subscription


def test_rebuilt_state_holds_each_accounts_subscriptions_with_their_anchor_day() -> None:
    subs = {s.subscription_id: s for s in (
        make_subscription(subscription_id="s1", billing_account_id="ba-a", anchor_day=3),
        make_subscription(subscription_id="s2", billing_account_id="ba-a", anchor_day=17),
        make_subscription(subscription_id="s3", billing_account_id="ba-b"))}
    space = KeySpace("app")
    state = rebuild_state(space, 0, SubscriptionState(subs), [], [], [], {}, Report(), now=0)
    assert state.hashes[space.account_subscriptions("ba-a")] == {"s1": "3", "s2": "17"}
    assert state.hashes[space.account_subscriptions("ba-b")] == {"s3": "1"}
    assert space.account_subscriptions("ba-a") not in state.expire_at  # never expires
