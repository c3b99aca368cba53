"""Several workers in one group; workers join, leave and are SIGKILLed mid-run (SPEC §9).

Input: tens of thousands of CDRs over 60 subscriptions on a 6-partition topic,
with exact duplicates (must change nothing) and conflicting duplicates (dead
letters) mixed in, produced in paced chunks so the faults land while records
flow. The end state must be what the reference model says, whatever happened.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.faults.conftest import deployment_on, note
from tests.faults.run import FaultRun
from tests.faults.stack import FaultStack
from tests.faults.workload import Workload, consumer_lag

pytestmark = pytest.mark.faults


async def test_workers_join_and_leave_during_a_run(fault_stack: FaultStack) -> None:
    """1 worker, then 2, then 3 join; one leaves (SIGTERM) and another joins again."""
    run = FaultRun(deployment_on(fault_stack, partitions=6), Workload.generate(21, 30_000))
    await run.prepare(workers=1)
    events: list[str] = []
    try:
        async def pace(sent: int) -> None:
            chunk = sent // 2000
            if chunk in (3, 6):
                run.add_worker(wait_ready=False)
                events.append(f"join@{sent}")
            elif chunk == 9:
                run.workers[0].stop()  # a graceful leave: SIGTERM, Faust commits and leaves
                events.append(f"leave@{sent}")
            elif chunk == 12:
                run.add_worker(wait_ready=False)
                events.append(f"join@{sent}")
            await asyncio.sleep(0.8)

        started = time.monotonic()
        await run.send(pace=pace)
        verdict, _ = await run.finish(timeout=300)
        elapsed = time.monotonic() - started
        assert len(run.alive()) == 3, "every worker still running but the one that left"
        assert all(w.http_status("/readyz") == 200 for w in run.alive())
        note("join/leave", f"3 workers, 6 partitions, {', '.join(events)}: {verdict.line()} "
                           f"in {elapsed:.0f}s")
    finally:
        await run.close()


@pytest.mark.parametrize("consumer", ["direct", "faust"])
async def test_sigkill_workers_at_random_moments(fault_stack: FaultStack, consumer: str) -> None:
    """≥ 50,000 CDRs; a random worker SIGKILLed at random instants 4 times, then restarted.

    The input is produced faster than two workers rate it (batches of 100), so they are
    busy all along: every kill lands with input waiting (the group's lag at that instant
    is reported) and batches fetched, rated in Redis, in delivery or not yet committed.
    """
    rnd = random.Random(9)
    workload = Workload.generate(7, 52_000)
    run = FaultRun(deployment_on(fault_stack, partitions=6, RATER_BATCH_MAX="100",
                                 RATER_CDR_CONSUMER=consumer), workload)
    await run.prepare(workers=2)
    kills: list[str] = []
    lags: list[int] = []
    try:
        async def chaos() -> None:
            for _ in range(4):
                await asyncio.sleep(rnd.uniform(1.0, 4.0))
                victim = rnd.choice(run.alive())
                pid = victim.process.pid if victim.process else -1
                run.sigkill(victim)
                at = time.monotonic() - started
                lag = await consumer_lag(run.settings, run.settings.topics.cdr)
                lags.append(lag)
                kills.append(f"{at:.1f}s pid {pid} lag {lag}")
                await asyncio.sleep(rnd.uniform(0.2, 2.0))
                victim.start(wait_ready=False)

        async def pace(sent: int) -> None:
            await asyncio.sleep(0.25)

        started = time.monotonic()
        chaos_task = asyncio.create_task(chaos())
        await run.send(pace=pace)
        await chaos_task
        verdict, _ = await run.finish(timeout=400)
        elapsed = time.monotonic() - started
        assert len(kills) == 4
        assert len(run.alive()) == 2
        for worker in run.alive():
            worker.wait_ready(60)
        note(f"sigkill ({consumer} CDR consumer)",
             f"{len(workload.records)} CDRs ({workload.duplicates} duplicates, "
             f"{workload.conflicts} conflicting), 2 workers, SIGKILL at "
             f"[{'; '.join(kills)}]: {verdict.line()} in {elapsed:.0f}s")
        assert verdict.distinct_calls == workload.unique_calls
        busy = sum(1 for lag in lags if lag > 0)
        assert busy >= 3, f"kills should land while input is waiting, lags {lags}"
    finally:
        await run.close()
