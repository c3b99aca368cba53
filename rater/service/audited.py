"""Changing an audited setting so that the change and its audit event cannot be separated:
the PAYG switch (SPEC §7) and a user's spend limit (SPEC §14) go through here.

A change is made in three steps, each safe to fail:

1. reserve the next revision in Redis (nothing changes yet);
2. publish the event carrying that revision and wait for the broker's ack. If that fails,
   nothing changed, and the caller may simply try again;
3. apply the change with that revision: only a revision newer than the stored one
   applies. If this step fails, the event is already on the topic, and the subscriptions
   agent applies it when it meets it (its revision is newer).

So no change happens without its event. Of two racing changes the one with the later
revision stands, in Redis and in the audit trail ordered by revision alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from rater.store import StoreUnavailable

Publish = Callable[[str, bytes, bytes], Awaitable[None]]
V = TypeVar("V")


class EventNotRecorded(Exception):
    """The audit event could not be published: nothing was changed."""


class ChangeNotApplied(Exception):
    """The audit event is published but Redis did not take the change: a worker applies
    it when it consumes the event."""


class Setting(Protocol[V]):
    """One audited setting of one subscription, as the store keeps it."""

    @property
    def subscription_id(self) -> str: ...

    async def reserve(self) -> tuple[V, int] | None:
        """(the value now, the next revision); None when the subscription is unknown."""
        ...

    def event(self, value: V, previous: V, revision: int, actor: str, role: str,
              at_ms: int) -> dict[str, Any]:
        """The audit event of the change."""
        ...

    async def apply(self, value: V, revision: int) -> int | None:
        """The revision stored after applying; None when the subscription is unknown."""
        ...


@dataclass(frozen=True, slots=True)
class Changed(Generic[V]):
    subscription_id: str
    value: V
    previous: V
    revision: int
    applied: bool  # False: a change with a newer revision was applied first


class AuditedChanges:
    def __init__(self, publish: Publish, events_topic: str, clock: Callable[[], int]) -> None:
        self.publish = publish
        self.events_topic = events_topic
        self.clock = clock

    async def change(self, setting: Setting[V], value: V, actor: str,
                     role: str) -> Changed[V] | None:
        """None when the subscription is unknown; EventNotRecorded, ChangeNotApplied or
        StoreUnavailable when a step fails (see the module's docstring)."""
        reserved = await setting.reserve()
        if reserved is None:
            return None
        previous, revision = reserved
        event = setting.event(value, previous, revision, actor, role, self.clock())
        try:
            await self.publish(self.events_topic, setting.subscription_id.encode(),
                               orjson.dumps(event))
        except Exception as exc:
            raise EventNotRecorded(str(exc) or type(exc).__name__) from exc
        try:
            stored = await setting.apply(value, revision)
        except StoreUnavailable as exc:
            raise ChangeNotApplied(str(exc)) from exc
        # the agent may have met the event and applied this revision first: applied too
        return Changed(setting.subscription_id, value, previous, revision, stored == revision)
