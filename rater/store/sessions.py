"""Credit-control sessions in Redis (SPEC §11): the session scripts, the session-id index
and the sweeper's registry. `RedisStore.sessions` is one of these.

Each request is one atomic script on the subscription's hash slot (lua/session_*.lua):
checks, sweep of the subscription's expired sessions, decision, reservation. Around it:

* the **index** `<prefix>:sid:<session_id>` -> subscription_id, written before the initial
  request's script, lets an update or terminate that does not name its subscription find
  it (one GETEX, which also keeps the index alive as long as the session is used);
* the **registry** `<prefix>:sessions` (keys.py) gets the new session's deadline with
  `ZADD LT` *before* the initial script runs, so a worker killed in between leaves at
  worst an early visit of the sweeper, never a session the sweeper does not know of.

Every redis-py failure leaves as `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rater.rating.sessions import (
    Expirations,
    SessionOutcome,
    SessionPolicy,
    refusal,
)
from rater.records.shapes import ZONES, SessionInitial, SessionTerminate, SessionUpdate, Zone
from rater.store import keys
from rater.store.errors import redis_errors
from rater.store.keys import KEEP_MS, SESSION_KEEP_MS, SESSION_SWEEP_MAX, ZONE_LETTER
from rater.store.scripts import source

if TYPE_CHECKING:
    from rater.store.redis_store import RedisStore

# How many registry members one gauge pass reads, at most (bounded work per pass).
TOTALS_MAX = 100_000
# Replies parsed per pipeline: redis-py parses a pipeline's replies without giving the
# loop back, 1000 of them held it for ~15 ms beside session requests; 100 for ~1.5 ms.
TOTALS_CHUNK = 100


@dataclass(frozen=True, slots=True)
class SessionTotals:
    """Every subscription's session totals added up (the gauges), as of one read."""

    open: int = 0
    terminated: int = 0
    reserved_s: dict[Zone, int] = field(default_factory=lambda: dict.fromkeys(ZONES, 0))
    subscriptions: int = 0  # registry members read
    complete: bool = True  # False when the registry held more than TOTALS_MAX


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What the periodic sweep of one subscription released, and what is left."""

    expired: Expirations
    next_deadline_ms: int | None  # None: no session holds a reservation any more


class SessionStore:
    def __init__(self, store: RedisStore) -> None:
        self.store = store
        client = store.client
        self._initial = client.register_script(source("session_initial"))
        self._update = client.register_script(source("session_update"))
        self._terminate = client.register_script(source("session_terminate"))
        self._sweep = client.register_script(source("session_sweep"))
        self._claim = client.register_script(source("sweep_claim"))
        self._settle = client.register_script(source("sweep_settle"))

    @property
    def registry(self) -> str:
        return self.store.keys.session_registry

    def index_key(self, session_id: str) -> str:
        return self.store.keys.session_index(session_id)

    # ------------------------------------------------------------ requests ---

    async def initial(self, request: SessionInitial, policy: SessionPolicy,
                      now_ms: int, late_grace_ms: int) -> SessionOutcome:
        sub_key = self.store.sub_key(request.subscription_id)
        args = [request.session_id, request.user_id, ZONE_LETTER[request.zone],
                "1" if request.is_free else "0", request.requested_s,
                _number(request.request_number), now_ms, policy.validity_s, policy.grace_s,
                SESSION_KEEP_MS, SESSION_SWEEP_MAX, late_grace_ms, KEEP_MS]
        index_ttl = index_ttl_ms(policy)
        index = ("SET", self.index_key(request.session_id), request.subscription_id,
                 "PX", index_ttl)
        # free calls are never registered for the sweeper
        register = () if request.is_free else (
            ("ZADD", self.registry, "LT", policy.open_deadline_ms(now_ms),
             request.subscription_id),)
        if self.store.cluster:  # other slots than the subscription's: calls of their own
            for command in (index, *register):
                await self.store.request_command(*command)
            reply = await self.store.request_script(self._initial, [sub_key], args)
        else:  # one round trip, in this order
            reply = await self.store.request_script(self._initial, [sub_key], args,
                                                    before=(index, *register))
        return self._outcome(request.session_id, reply)

    async def update(self, session_id: str, request: SessionUpdate, policy: SessionPolicy,
                     now_ms: int) -> tuple[str | None, SessionOutcome]:
        """(the session's subscription, the outcome); (None, 404) when the id is unknown."""
        subscription_id = request.subscription_id or await self.resolve(session_id, policy)
        if subscription_id is None:
            return None, SessionOutcome(refusal=refusal("unknown_session", session_id))
        args = [session_id, request.used_s, request.requested_s,
                _number(request.request_number), now_ms, policy.validity_s, policy.grace_s,
                SESSION_KEEP_MS, SESSION_SWEEP_MAX]
        return subscription_id, await self._follow_up(self._update, subscription_id,
                                                      session_id, args)

    async def terminate(self, session_id: str, request: SessionTerminate,
                        policy: SessionPolicy, now_ms: int) -> tuple[str | None, SessionOutcome]:
        subscription_id = request.subscription_id or await self.resolve(session_id, policy)
        if subscription_id is None:
            return None, SessionOutcome(refusal=refusal("unknown_session", session_id))
        args = [session_id, request.used_s, _number(request.request_number), now_ms,
                policy.cdr_wait_s, SESSION_KEEP_MS, SESSION_SWEEP_MAX]
        return subscription_id, await self._follow_up(self._terminate, subscription_id,
                                                      session_id, args)

    async def resolve(self, session_id: str, policy: SessionPolicy) -> str | None:
        """The subscription of a session id from the index (kept alive by this read)."""
        found: str | None = await self.store.request_command(
            "GETEX", self.index_key(session_id), "PX", index_ttl_ms(policy))
        return found

    async def _follow_up(self, script: Any, subscription_id: str, session_id: str,
                         args: list[Any]) -> SessionOutcome:
        reply = await self.store.request_script(script, [self.store.sub_key(subscription_id)],
                                                args)
        if reply[0] == "ok" and reply[4]:  # a deadline earlier than the session had
            await self.store.request_command("ZADD", self.registry, "LT", int(reply[4]),
                                             subscription_id)
        return self._outcome(session_id, reply)

    def _outcome(self, session_id: str, reply: Sequence[Any]) -> SessionOutcome:
        kind = reply[0]
        if kind == "replay":
            return SessionOutcome(keys.session_answer(reply[1]), replayed=True)
        if kind == "refused":
            _, code, got, before = reply
            return SessionOutcome(refusal=refusal(code, session_id, _int_or_none(got),
                                                  _int_or_none(before)))
        expired = Expirations(int(reply[2]), int(reply[3]))
        if expired:
            self.store.on_expired(expired)
        return SessionOutcome(keys.session_answer(reply[1]), expired=expired)

    # ------------------------------------------------------------- sweeper ---

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, float]]:
        """Registry members due for a sweep: (subscription_id, the score seen)."""
        async with redis_errors():
            found: list[tuple[str, float]] = await self.store.client.zrangebyscore(
                self.registry, "-inf", now_ms, start=0, num=limit, withscores=True)
        return found

    async def claim(self, subscription_id: str, seen: float, claim_ms: int) -> bool:
        async with redis_errors():
            return bool(await self._claim(keys=[self.registry],
                                          args=[subscription_id, _score(seen), claim_ms]))

    async def sweep(self, subscription_id: str, now_ms: int) -> SweepResult:
        async with redis_errors():
            validity, cdr_wait, earliest = await self._sweep(
                keys=[self.store.sub_key(subscription_id)],
                args=[now_ms, SESSION_KEEP_MS, SESSION_SWEEP_MAX])
        expired = Expirations(int(validity), int(cdr_wait))
        if expired:
            self.store.on_expired(expired)
        return SweepResult(expired, int(float(earliest)) if earliest else None)

    async def settle(self, subscription_id: str, claim_ms: int,
                     next_deadline_ms: int | None) -> bool:
        """True when the subscription stays in the registry."""
        next_text = "" if next_deadline_ms is None else next_deadline_ms
        async with redis_errors():
            return bool(await self._settle(keys=[self.registry],
                                           args=[subscription_id, claim_ms, next_text]))

    async def totals(self) -> SessionTotals:
        """Every registered subscription's totals added up (at most TOTALS_MAX of them)."""
        fields = [keys.SESSIONS_OPEN_FIELD, keys.SESSIONS_RESERVING_FIELD,
                  *(keys.subscription_reserved_field(zone) for zone in ZONES)]
        client = self.store.client
        async with redis_errors():
            members: list[str] = await client.zrange(self.registry, 0, TOTALS_MAX)
            opened = terminated = 0
            reserved = dict.fromkeys(ZONES, 0)
            for start in range(0, min(len(members), TOTALS_MAX), TOTALS_CHUNK):
                pipe = client.pipeline(transaction=False)
                for sub in members[start:start + TOTALS_CHUNK]:
                    pipe.hmget(self.store.sub_key(sub), fields)
                for values in await pipe.execute():
                    opened += int(values[0] or 0)
                    terminated += int(values[1] or 0) - int(values[0] or 0)
                    for zone, value in zip(ZONES, values[2:], strict=True):
                        reserved[zone] += int(value or 0)
        return SessionTotals(opened, terminated, reserved, min(len(members), TOTALS_MAX),
                             len(members) <= TOTALS_MAX)

    async def raw(self, subscription_id: str, session_id: str) -> dict[str, str]:
        """A session hash as stored (for tests and the operator's eyes)."""
        async with redis_errors():
            found: dict[str, str] = await self.store.client.hgetall(
                self.store.keys.session(subscription_id, session_id))
        return found


def index_ttl_ms(policy: SessionPolicy) -> int:
    """The session-id index outlives the longest an open session can go between two
    requests (validity and grace; every lookup renews it) and then the keep time of an
    ended session, for retries. A set-up a second keeps about 1,200 of them at the
    defaults; a request that comes later than that for an ended session gets 404."""
    return (policy.validity_s + policy.grace_s) * 1000 + SESSION_KEEP_MS


def _number(value: int | None) -> str | int:
    return "" if value is None else value


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None


def _score(value: float) -> str:
    """A registry score (ms, exact below 2^53) as the text the claim script compares."""
    return str(int(value))
