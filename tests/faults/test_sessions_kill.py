"""SIGKILL of a worker in the middle of a burst of credit-control sessions and CDRs.

Two workers serve the sessions API (requests go to both; a request whose worker is gone
goes again, unchanged, to the other, as a switch fails over) and rate the CDRs. Eight
subscriptions with PAYG off get waves of 40 concurrent set-ups each; while one wave is
being set up, the calls of the wave before end within their grants (terminate, then the
CDR through Kafka) and about a fifth of them are abandoned (never reported again). One
worker is SIGKILLed in the middle and restarted. Throughout, a watcher reads every pool
in Redis and holds the invariant of SPEC §11.3: `used_included + reserved <= included`.
Afterwards:

* every ended call rated `included`, nothing unbilled;
* the abandoned sessions are released by the sweepers alone (nothing reads those
  subscriptions), within the documented bound of their deadline;
* every counter equals the reference model's, driven with the same answers.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from rater.config import Settings
from rater.rating.clock import now_ms
from rater.web.tokens import issue_token
from tests.builders import subscription_doc
from tests.faults.conftest import deployment_on, note
from tests.faults.run import FaultRun
from tests.faults.stack import FaultStack
from tests.faults.workload import Workload
from tests.integration import session_support as sessions
from tests.integration.api_support import safe_anchor_day, sync_redis

pytestmark = pytest.mark.faults

VALIDITY_S, GRACE_S, SWEEP_S = 20, 5, 0.5
CLAIM_BOUND_S = VALIDITY_S + GRACE_S + 60  # a claim left by a killed sweeper (docs)
JWT = {"RATER_JWT_ALGORITHM": "HS256", "RATER_JWT_KEY": "faults-sessions-secret-0123456789abcd",
       "RATER_JWT_ISSUER": "https://idp.rater.test/", "RATER_JWT_AUDIENCE": "rater-api"}
PLANS = [("1/1", 7), ("6/6", 12), ("1/1", 45), ("60/60", 60), ("30/6", 36), ("1/1", 13),
         ("6/6", 30), ("60/1", 61)]  # (increment, requested_s) per subscription
CALLS_PER_WAVE = 40


def subscription(i: int, tag: str) -> dict[str, Any]:
    increment, _ = PLANS[i]
    return subscription_doc(subscription_id=f"{tag}-s{i}", billing_account_id=f"ba-{tag}",
                            licenses=1, domestic_minutes=5, international_minutes=0,
                            increment=increment, anchor_day=safe_anchor_day())


class Watcher(threading.Thread):
    """Reads every pool straight from Redis (reads that change nothing) in a thread of its
    own, and records any instant where a pool holds more than it includes."""

    def __init__(self, settings: Settings, subs: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.subs = subs
        self.reads = 0
        self.overruns: list[tuple[str, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        client = sync_redis(self.settings, decode_responses=True)
        prefix = self.settings.key_prefix
        try:
            while not self.done.is_set():
                for doc in self.subs:
                    sub = doc["subscription_id"]
                    for key in client.scan_iter(match=f"{prefix}:{{{sub}}}:p:*"):
                        used, reserved = client.hmget(key, "d:used", "d:res")
                        total = int(used or 0) + int(reserved or 0)
                        if total > 300:  # 1 licence x 5 minutes
                            self.overruns.append((key, int(used or 0), int(reserved or 0)))
                    self.reads += 1
                self.done.wait(0.05)
        finally:
            client.close()

    def finish(self) -> None:
        self.done.set()
        self.join(10)


async def test_sigkill_in_a_burst_of_sessions_and_cdrs(fault_stack: FaultStack) -> None:
    deployment = deployment_on(fault_stack, partitions=6, RATER_BATCH_MAX="50",
                               RATER_SESSION_VALIDITY_S=str(VALIDITY_S),
                               RATER_SESSION_GRACE_S=str(GRACE_S),
                               RATER_SESSION_SWEEP_S=str(SWEEP_S), **JWT)
    tag = f"k{random.randrange(10**6)}"
    docs = [subscription(i, tag) for i in range(len(PLANS))]
    run = FaultRun(deployment, Workload(docs, [], 0, 0, 0))
    await run.prepare(workers=2)
    settings = run.settings
    token = issue_token(Settings.from_env(run.workers[0].env), subject="sbc-1",
                        scope="call_authorizer")
    urls = [w.url for w in run.workers]
    started_ms = now_ms() - 900_000
    rnd = random.Random(5)
    watcher = Watcher(settings, docs)
    watcher.start()
    killed: list[str] = []
    bursts: list[sessions.Burst] = []
    try:
        async def chaos() -> None:
            await asyncio.sleep(rnd.uniform(1.0, 2.0))
            victim = run.workers[1]
            run.sigkill(victim)
            killed.append(f"{time.monotonic() - t0:.1f}s, {len(bursts)} waves set up")
            assert 0 < len(bursts) < len(docs), "the kill must land in the middle"
            await asyncio.sleep(1.0)
            victim.start(wait_ready=False)

        t0 = time.monotonic()
        chaos_task = asyncio.create_task(chaos())
        ended: list[list[sessions.CallEnd]] = []
        endings: list[asyncio.Task[dict[str, dict[str, Any]]]] = []
        for i, doc in enumerate(docs):
            burst = await sessions.set_up(urls, token, doc, CALLS_PER_WAVE, PLANS[i][1],
                                          f"{tag}-w{i}")
            ends = sessions.plan_ends(burst, seed=i, cdr_first=0.0, abandoned=0.2)
            bursts.append(burst)
            ended.append(ends)
            # this wave's calls end while the next wave is set up
            endings.append(asyncio.create_task(sessions.end_calls(
                settings, urls, token, burst, ends, started_ms, timeout_s=180)))
            await asyncio.sleep(0.4)  # waves keep coming while the worker dies
        await chaos_task
        last_set_up = time.monotonic()
        rated = [await task for task in endings]
        assert killed, "the worker was never killed"

        for burst, ends, calls in zip(bursts, ended, rated, strict=True):
            assert burst.granted_billable_s() <= 300
            assert len(calls) == len(ends)
            assert {r["outcome"] for r in calls.values()} <= {"included"}
            assert sum(r["unbilled_s"] for r in calls.values()) == 0

        # the abandoned sessions: released by the sweepers, nothing reads those pools
        abandoned = sum(len(b.permitted()) - len(e) for b, e in zip(bursts, ended, strict=True))
        assert abandoned > 0
        cleared_after = await wait_released(settings, docs, last_set_up + CLAIM_BOUND_S + 30)
        watcher.finish()
        assert watcher.reads > 20 and watcher.overruns == [], watcher.overruns[:3]
        lag_after_deadline = cleared_after - (last_set_up + VALIDITY_S + GRACE_S)
        assert lag_after_deadline <= CLAIM_BOUND_S, lag_after_deadline

        # every counter is the model's (the abandoned sessions expired there too)
        policy = settings.session_policy
        store = run.store
        assert store is not None
        for burst, ends, calls in zip(bursts, ended, rated, strict=True):
            model = sessions.model_of(burst, ends, started_ms, policy)
            model.sessions.sweep(burst.sub_id, now_ms() + 10**7)
            period = next(iter(calls.values()))["period"]
            snapshot = await store.snapshot(burst.sub_id, now_ms())
            assert snapshot is not None and snapshot.period == period
            assert snapshot.zones["domestic"] == model.zone(burst.sub_id, period, "domestic")
        for worker in run.alive():
            worker.wait_ready(60)
        note("sessions: sigkill",
             f"{len(docs)} waves of {CALLS_PER_WAVE} concurrent set-ups over 2 workers, "
             f"worker SIGKILLed at {killed[0]}: "
             f"{sum(len(b.permitted()) for b in bursts)} permitted, "
             f"{sum(len(e) for e in ended)} ended and rated included, {abandoned} abandoned "
             f"and released {max(0.0, lag_after_deadline):.1f}s after their deadline; "
             f"{watcher.reads} invariant reads, no overrun")
    finally:
        watcher.finish()
        await run.close()


async def wait_released(settings: Settings, docs: list[dict[str, Any]],
                        until: float) -> float:
    """When no session of these subscriptions holds anything (monotonic time)."""
    client = sync_redis(settings, decode_responses=True)
    prefix = settings.key_prefix
    try:
        while True:
            held = 0
            for doc in docs:
                sub = doc["subscription_id"]
                held += client.zcard(f"{prefix}:{{{sub}}}:sx")
                for key in client.scan_iter(match=f"{prefix}:{{{sub}}}:p:*"):
                    held += int(client.hget(key, "d:res") or 0)
            if held == 0 and client.zcard(f"{prefix}:sessions") == 0:
                return time.monotonic()
            assert time.monotonic() < until, f"{held} seconds/sessions still held"
            await asyncio.sleep(0.2)
    finally:
        client.close()
