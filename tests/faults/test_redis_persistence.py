"""Redis killed mid-run: the worker waits it out, and which AOF setting loses counters.

* SIGKILL of the Redis process (twice, with the persistence the project
  requires: AOF, appendfsync always): workers retry with backoff, /readyz
  answers 503 while Redis is away, no worker exits, and the end state is exact.
* A *host* crash (power loss: what was not fsynced is gone), emulated by
  tests/faults/fsync_tracker.c: with appendfsync always nothing acknowledged is
  lost and the end state is exact; with appendfsync everysec acknowledged
  counter updates are lost, so counters end below what calls.rated says.
  (A plain SIGKILL of Redis loses nothing even with everysec: the bytes are in
  the kernel's page cache. Only the host crash tells the settings apart.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rater.cli.rebuild import rebuild
from tests.faults.conftest import deployment_on, note
from tests.faults.run import FaultRun
from tests.faults.stack import FaultStack, HostCrash
from tests.faults.workload import (
    Workload,
    counter_differences,
    counters_from_rated,
    measure,
    verify,
)
from tests.integration.harness import Worker

pytestmark = pytest.mark.faults


async def readyz(worker: Worker) -> int | None:
    return await asyncio.to_thread(worker.http_status, "/readyz")


async def wait_readyz(workers: list[Worker], status: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answers = await asyncio.gather(*(readyz(w) for w in workers))
        if all(a == status for a in answers):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz not {status} on every worker within {timeout}s: {answers}")


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
async def test_redis_sigkill_and_restart_mid_run(fault_stack: FaultStack,
                                                 appendfsync: str) -> None:
    """SIGKILL of the Redis *process* loses nothing with either setting (page cache)."""
    assert fault_stack.appendfsync == "always", "the stack's default is the recommended setting"
    if appendfsync != "always":
        fault_stack.restart_redis(appendfsync)
    assert fault_stack.redis_config("appendfsync") == appendfsync
    run = FaultRun(deployment_on(fault_stack), Workload.generate(31, 25_000))
    outages: list[str] = []
    try:
        await run.prepare(workers=2)
        pids = [w.process.pid for w in run.workers if w.process]

        async def outage(after: float, down_s: float) -> None:
            await asyncio.sleep(after)
            fault_stack.kill_redis()
            gone = time.monotonic()
            not_ready = await wait_readyz(run.workers, 503, 15)
            await asyncio.sleep(max(0.0, down_s - (time.monotonic() - gone)))
            fault_stack.start_redis()
            back = time.monotonic()
            ready = await wait_readyz(run.workers, 200, 30)
            outages.append(f"down {back - gone:.1f}s, /readyz 503 after {not_ready:.1f}s, "
                           f"200 again {ready:.1f}s after restart")

        async def pace(sent: int) -> None:
            await asyncio.sleep(0.7)

        started = time.monotonic()
        faults = asyncio.gather(outage(3.0, 4.0), outage(14.0, 6.0))
        await run.send(pace=pace)
        await faults
        verdict, _ = await run.finish(timeout=300)
        assert [w.process.pid for w in run.alive() if w.process] == pids, "a worker exited"
        delays = run.retry_delays()
        assert len(delays) >= 4, f"expected batch retries while Redis was away, got {delays}"
        assert {0.1, 0.2, 0.4, 0.8} <= set(delays), f"no exponential backoff: {delays}"
        assert max(delays) <= 5.0
        note(f"redis sigkill, appendfsync {appendfsync}",
             f"2 workers, Redis SIGKILLed twice ({'; '.join(outages)}); {len(delays)} batch "
             f"retries, backoff up to {max(delays)}s, no worker exited: {verdict.line()} in "
             f"{time.monotonic() - started:.0f}s")
    finally:
        await run.close()
        if fault_stack.appendfsync != "always":
            fault_stack.restart_redis("always")


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
async def test_redis_host_crash(fault_stack: FaultStack, fsync_tracker: Path,
                                appendfsync: str) -> None:
    crash = HostCrash(fault_stack, fsync_tracker)
    crash.arm(appendfsync)
    # Offsets committed every 0.2 s: a record acknowledged to Kafka is soon past replay,
    # so any acknowledged Redis write the crash takes away stays lost.
    run = FaultRun(deployment_on(fault_stack, BROKER_COMMIT_INTERVAL="0.2"),
                   Workload.generate(41 if appendfsync == "always" else 43, 20_000))
    lost: list[int] = []
    try:
        await run.prepare(workers=1)

        assert fault_stack.redis_config("appendfsync") == appendfsync

        recovery: list[asyncio.Future[None]] = []

        async def crash_and_restart() -> None:
            # everysec: crash once the worker had time to act on what Redis told it
            settle_s = 0.2 if appendfsync == "everysec" else 0.0
            lost.append(await asyncio.to_thread(crash.crash, settle_s=settle_s))
            await asyncio.sleep(1.0)
            crash.restart(appendfsync)

        async def pace(sent: int) -> None:
            if sent == 6_000:  # in the background: CDRs keep coming, Redis keeps writing
                recovery.append(asyncio.ensure_future(crash_and_restart()))
            await asyncio.sleep(0.4)

        await run.send(pace=pace)
        await asyncio.gather(*recovery)
        expected = run.expected()
        assert run.store is not None
        if appendfsync == "always":
            seen = await run.collect(expected, timeout=300)
            verdict = await verify(run.store, expected, seen)
            note(f"host crash, appendfsync {appendfsync}",
                 f"{lost[0]} un-fsynced AOF bytes cut (never acknowledged): nothing lost, "
                 f"{verdict.line()}")
        else:
            seen = await run.collect(None, timeout=300)
            damage = await measure(run.store, expected, seen)
            note(f"host crash, appendfsync {appendfsync}",
                 f"{lost[0]} un-fsynced AOF bytes cut: {damage.line()}")
            assert lost[0] > 0, "the crash should have caught un-fsynced writes"
            assert damage.any, "everysec lost acknowledged writes, yet nothing shows"
            assert damage.counters_below > 0, "lost writes leave counters below the outputs"
            # the recovery of docs/operations.md: workers stopped, Redis rebuilt from Kafka;
            # the counters then agree with what calls.rated (and billing) was told
            for worker in run.workers:
                worker.stop()
            report = await rebuild(run.settings)
            assert not await counter_differences(run.store, counters_from_rated(seen.rated))
            note(f"host crash, appendfsync {appendfsync}",
                 f"after `rater rebuild --from-rated` ({report.seconds:.1f}s) every counter "
                 f"equals the sum of the first rated record of its calls "
                 f"({report.rated_conflicts} calls found with two contents)")
    finally:
        await run.close()
        fault_stack.restart_redis("always")
