"""Setting a user's monthly spend limit (SPEC §14), audited like PAYG: `spend_limit.changed`
is published before the limit is applied, by `rater.service.audited`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rater.rating.outputs import spend_limit_changed
from rater.service.audited import AuditedChanges, Changed, Publish
from rater.store import RedisStore


@dataclass(frozen=True, slots=True)
class SpendLimitSetting:
    """One user's limit (micro-units; None: no limit) as an audited setting."""

    store: RedisStore
    subscription_id: str
    user_id: str

    async def reserve(self) -> tuple[int | None, int] | None:
        return await self.store.reserve_spend_limit_revision(self.subscription_id,
                                                             self.user_id)

    def event(self, value: int | None, previous: int | None, revision: int, actor: str,
              role: str, at_ms: int) -> dict[str, Any]:
        return spend_limit_changed(self.subscription_id, self.user_id, value, previous,
                                   revision, actor, role, at_ms)

    async def apply(self, value: int | None, revision: int) -> int | None:
        stored = await self.store.set_spend_limit(self.subscription_id, self.user_id, value,
                                                  revision)
        return None if stored is None else stored.revision


class SpendLimits:
    def __init__(self, store: RedisStore, publish: Publish, events_topic: str,
                 clock: Callable[[], int]) -> None:
        self.store = store
        self.changes = AuditedChanges(publish, events_topic, clock)

    async def set(self, subscription_id: str, user_id: str, limit_micro: int | None,
                  actor: str, role: str) -> Changed[int | None] | None:
        """None when the subscription is unknown (rater.service.audited for the errors)."""
        return await self.changes.change(
            SpendLimitSetting(self.store, subscription_id, user_id), limit_micro, actor, role)
