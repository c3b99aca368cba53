"""The two rating engines behind one interface, so every rule test runs on both.

`ModelEngine` is the pure reference model; `RedisEngine` is the Lua script in a
real Redis. Tests written against `Engine` hold the two to the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rater.rating.clock import RatingClock
from rater.rating.model import ReferenceRater
from rater.rating.results import CallRating, Rejection
from rater.records import Cdr, Subscription, cdr_fingerprint
from rater.store import RatingInput, RedisStore


class Engine(Protocol):
    name: str

    async def upsert(self, sub: Subscription) -> None: ...
    async def set_payg(self, subscription_id: str, enabled: bool) -> None: ...
    async def rate(
        self, cdrs: Sequence[Cdr], clock: RatingClock, rated_at_ms: int
    ) -> list[CallRating | Rejection]: ...


class ModelEngine:
    name = "model"

    def __init__(self) -> None:
        self.model = ReferenceRater()

    async def upsert(self, sub: Subscription) -> None:
        self.model.upsert(sub)

    async def set_payg(self, subscription_id: str, enabled: bool) -> None:
        self.model.set_payg(subscription_id, enabled)

    async def rate(
        self, cdrs: Sequence[Cdr], clock: RatingClock, rated_at_ms: int
    ) -> list[CallRating | Rejection]:
        return [self.model.rate(c, cdr_fingerprint(c), clock, rated_at_ms) for c in cdrs]


class RedisEngine:
    name = "redis"

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def upsert(self, sub: Subscription) -> None:
        await self.store.upsert_subscription(sub)

    async def set_payg(self, subscription_id: str, enabled: bool) -> None:
        await self.store.set_payg(subscription_id, enabled)

    async def rate(
        self, cdrs: Sequence[Cdr], clock: RatingClock, rated_at_ms: int
    ) -> list[CallRating | Rejection]:
        items = [RatingInput(c, cdr_fingerprint(c)) for c in cdrs]
        return await self.store.rate_batch(items, clock, rated_at_ms)
