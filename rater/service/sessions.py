"""Credit-control sessions (SPEC §11): the step the HTTP views call, what it counts, and the
periodic sweeper that releases the reservations of subscriptions nobody asks about.

Every script that decides on or reads a pool first releases the subscription's expired
sessions, so no reader ever sees an expired reservation. What the sweeper adds is for
subscriptions no request touches: their reservations are released, their session keys
leave memory and the gauges stay true. The sweeper's bounds are in docs/sessions.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from rater import metrics
from rater.config import Settings
from rater.rating.clock import now_ms
from rater.rating.sessions import Expirations, RequestKind, SessionOutcome
from rater.records import SessionInitial, SessionTerminate, SessionUpdate
from rater.store import RedisStore
from rater.store.sessions import SessionTotals

log = logging.getLogger(__name__)

# One sweep pass visits at most this many due subscriptions, and stops after this long;
# what is left is due again at the next pass.
SWEEP_BATCH = 500
SWEEP_MAX_PER_PASS = 20_000
SWEEP_BUDGET_S = 2.0
# A claim outlasts every deadline a session request can register meanwhile by this much,
# so such a registration always lowers the claim (lua/sweep_claim.lua). Requests register
# only deadlines within validity + grace of their time: an initial request its open
# deadline, a terminate its CDR wait's end only when that comes before its open deadline.
CLAIM_MARGIN_MS = 60_000


def count_expirations(expired: Expirations) -> None:
    """`RedisStore.on_expired` in a worker: every expiry a script made, counted once."""
    if expired.validity:
        metrics.SESSION_EXPIRATIONS.labels("validity").inc(expired.validity)
    if expired.cdr_wait:
        metrics.SESSION_EXPIRATIONS.labels("cdr_wait").inc(expired.cdr_wait)


def count_request(kind: RequestKind, result: str, reason: str, elapsed_s: float) -> None:
    """One session request answered: `result` permit, block or error; `reason` the answer's
    reason or the error code."""
    metrics.SESSION_REQUESTS.labels(kind, result, reason).inc()
    metrics.SESSION_REQUEST_SECONDS.labels(kind).observe(elapsed_s)


@dataclass(frozen=True, slots=True)
class SessionReply:
    subscription_id: str | None  # None: the session id is not known at all
    outcome: SessionOutcome


class SessionService:
    """The three requests of SPEC §11, on the store's scripts."""

    def __init__(self, store: RedisStore, settings: Settings,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.policy = settings.session_policy
        self.late_grace_ms = settings.late_grace_s * 1000
        self.clock = clock

    async def initial(self, request: SessionInitial) -> SessionReply:
        outcome = await self.store.sessions.initial(request, self.policy, self.clock(),
                                                    self.late_grace_ms)
        return SessionReply(request.subscription_id, outcome)

    async def update(self, session_id: str, request: SessionUpdate) -> SessionReply:
        sub, outcome = await self.store.sessions.update(session_id, request, self.policy,
                                                        self.clock())
        return SessionReply(sub, outcome)

    async def terminate(self, session_id: str, request: SessionTerminate) -> SessionReply:
        sub, outcome = await self.store.sessions.terminate(session_id, request, self.policy,
                                                           self.clock())
        return SessionReply(sub, outcome)


@dataclass(frozen=True, slots=True)
class SweepPass:
    visited: int  # subscriptions claimed and swept
    expired: Expirations
    totals: SessionTotals


class SessionSweeper:
    """Every worker runs one (`rater.agents.sweeper`); they share the registry safely: a
    subscription is claimed before it is swept, and a release is atomic and counted once.
    """

    def __init__(self, store: RedisStore, settings: Settings,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.clock = clock
        policy = settings.session_policy
        # also how long a subscription waits for its next sweep when the worker that
        # claimed it died before settling it (docs/sessions.md, the bounds)
        self.claim_for_ms = (policy.validity_s + policy.grace_s) * 1000 + CLAIM_MARGIN_MS

    async def run_once(self) -> SweepPass:
        """Sweep the due subscriptions (bounded), then read the totals for the gauges."""
        now = self.clock()
        started = time.monotonic()
        sessions = self.store.sessions
        visited = 0
        expired = Expirations()
        while visited < SWEEP_MAX_PER_PASS and time.monotonic() - started < SWEEP_BUDGET_S:
            due = await sessions.due(now, SWEEP_BATCH)
            for subscription_id, seen in due:
                claim = now + self.claim_for_ms
                if not await sessions.claim(subscription_id, seen, claim):
                    continue  # another worker has it, or a request just registered it
                result = await sessions.sweep(subscription_id, now)
                await sessions.settle(subscription_id, claim, result.next_deadline_ms)
                expired += result.expired
                visited += 1
            if len(due) < SWEEP_BATCH:
                break
            await asyncio.sleep(0)  # let requests in between batches
        totals = await sessions.totals()
        metrics.SESSIONS.labels("open").set(totals.open)
        metrics.SESSIONS.labels("terminated").set(totals.terminated)
        for zone, seconds in totals.reserved_s.items():
            metrics.SESSION_RESERVED_SECONDS.labels(zone).set(seconds)
        if not totals.complete:
            log.warning("session gauges count only the first %d subscriptions with sessions",
                        totals.subscriptions)
        return SweepPass(visited, expired, totals)
