"""Switching pay-as-you-go (SPEC §7), audited: `payg.changed` is published before the
switch is applied, by `rater.service.audited` (whose docstring has the three steps)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rater.rating.outputs import payg_changed
from rater.service.audited import AuditedChanges, Changed, Publish
from rater.store import RedisStore


@dataclass(frozen=True, slots=True)
class PaygSetting:
    """A subscription's PAYG flag as an audited setting."""

    store: RedisStore
    subscription_id: str

    async def reserve(self) -> tuple[bool, int] | None:
        return await self.store.reserve_payg_revision(self.subscription_id)

    def event(self, value: bool, previous: bool, revision: int, actor: str, role: str,
              at_ms: int) -> dict[str, Any]:
        return payg_changed(self.subscription_id, value, previous, revision, actor, role,
                            at_ms)

    async def apply(self, value: bool, revision: int) -> int | None:
        stored = await self.store.set_payg(self.subscription_id, value, revision)
        return None if stored is None else stored.revision


class PaygSwitcher:
    def __init__(self, store: RedisStore, publish: Publish, events_topic: str,
                 clock: Callable[[], int]) -> None:
        self.store = store
        self.changes = AuditedChanges(publish, events_topic, clock)

    async def switch(self, subscription_id: str, enabled: bool, actor: str,
                     role: str) -> Changed[bool] | None:
        """None when the subscription is unknown (rater.service.audited for the errors)."""
        return await self.changes.change(PaygSetting(self.store, subscription_id), enabled,
                                         actor, role)
