"""Switching pay-as-you-go so that the switch and its audit record cannot be separated.

SPEC §7: a PAYG switch is "recorded as a `payg.changed` event". The switch is made in
three steps, each safe to fail:

1. reserve the next revision in Redis (nothing is switched yet);
2. publish the `payg.changed` event carrying that revision and wait for the broker's
   ack. If that fails, nothing was switched, and the caller may simply try again;
3. apply the switch with that revision: only a revision newer than the stored one
   applies. If this step fails, the event is already on the topic, and the
   subscriptions agent applies it when it meets it (its revision is newer).

So no switch happens without its event. Of two racing switches the one with the later
revision stands, in Redis and in the audit trail ordered by revision alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from rater.rating.outputs import payg_changed
from rater.store import RedisStore, StoreUnavailable

Publish = Callable[[str, bytes, bytes], Awaitable[None]]


class PaygNotRecorded(Exception):
    """The audit event could not be published: nothing was switched."""


class PaygNotApplied(Exception):
    """The audit event is published but Redis did not take the switch: a worker applies
    it when it consumes the event."""


@dataclass(frozen=True, slots=True)
class PaygSwitched:
    subscription_id: str
    enabled: bool
    previous: bool
    revision: int
    applied: bool  # False: a switch with a newer revision was applied first


class PaygSwitcher:
    def __init__(self, store: RedisStore, publish: Publish, events_topic: str,
                 clock: Callable[[], int]) -> None:
        self.store = store
        self.publish = publish
        self.events_topic = events_topic
        self.clock = clock

    async def switch(self, subscription_id: str, enabled: bool, actor: str,
                     role: str) -> PaygSwitched | None:
        """None when the subscription is unknown; PaygNotRecorded, PaygNotApplied or
        StoreUnavailable when a step fails (see the module's docstring)."""
        reserved = await self.store.reserve_payg_revision(subscription_id)
        if reserved is None:
            return None
        previous, revision = reserved
        event = payg_changed(subscription_id, enabled, previous, revision, actor, role,
                             self.clock())
        try:
            await self.publish(self.events_topic, subscription_id.encode(), orjson.dumps(event))
        except Exception as exc:
            raise PaygNotRecorded(str(exc) or type(exc).__name__) from exc
        try:
            stored = await self.store.set_payg(subscription_id, enabled, revision)
        except StoreUnavailable as exc:
            raise PaygNotApplied(str(exc)) from exc
        # the agent may have met the event and applied this revision first: applied too
        return PaygSwitched(subscription_id, enabled, previous, revision,
                            stored is not None and stored.revision == revision)
